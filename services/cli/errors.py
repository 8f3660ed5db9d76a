"""Turning user errors into one line on stderr and a non-zero exit, never a traceback.

This is the one place that translates what the libraries raise for bad input: pydantic's
validation of FINSENT_* settings (which names fields, not variables, over many lines) and
click's usage errors (which draw a box around a multi-line message). Each becomes one line
naming what the user typed, what is wrong and what is allowed.

Exit codes of every command: 0 success; 1 the command ran and found a problem (a failed
delivery, a rejected import, `doctor` finding a problem) or an unexpected error (a bug: one
line from `services.cli.app.main`); 2 bad input (an argument, an
option, a setting, an unreachable or unsupported service); 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError
    from typer._click.exceptions import ClickException

EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Values never echoed back in an error line: they may hold a password or a token.
_SECRET_WORDS = ("password", "secret", "token", "key")


def fail(message: str, *, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"finsent: error: {message}", err=True)
    sys.exit(code)


def require_files(paths: Iterable[str | Path | None], what: str = "file") -> None:
    """One line for the first given file that is not there (`what`: "file", "soft-targets
    file", ...). Commands that load torch and transformers (seconds on a CPU) check their
    files first, so a typo fails at once."""
    for path in paths:
        if path is not None and not Path(path).is_file():
            problem = f"is a directory, not a {what}" if Path(path).is_dir() else f"no such {what}"
            fail(f"{path}: {problem}")


def require_dirs(paths: Iterable[str | Path], what: str) -> None:
    """As `require_files`, for directories (`what`: "model directory", ...)."""
    for path in paths:
        if not Path(path).is_dir():
            fail(f"{path}: no such {what}")


def env_name(field: str) -> str:
    return f"FINSENT_{field.upper()}"


def shown_value(field: str, value: Any) -> str:
    """A setting's value as it may appear in a message or a listing: URLs without their
    password, secrets not at all."""
    if value is None:
        return ""
    text = str(value)
    if any(word in field for word in _SECRET_WORDS) and not field.endswith("_file"):
        return "****" if text else ""
    if "://" in text:
        # A database URL's user is a login name; a bare user part of another URL is a token.
        return mask_url(text, user_is_secret=field != "database_url")
    return text


def mask_url(text: str, *, user_is_secret: bool = True) -> str:
    """`scheme://user:****@host/...?token=****`: the password (or a bare token) of a URL
    hidden, and query values whose names say they are secrets."""
    from urllib.parse import urlsplit

    try:
        parts = original = urlsplit(text)
    except ValueError:
        return "<unparsable URL>"
    if parts.query:
        pairs = (p.partition("=") for p in parts.query.split("&"))
        query = "&".join(
            f"{k}={'****' if any(w in k.lower() for w in _SECRET_WORDS) else v}" if eq else k
            for k, eq, v in pairs
        )
        parts = parts._replace(query=query)
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        if ":" in userinfo:
            parts = parts._replace(netloc=f"{user}:****@{host}")
        elif user_is_secret:
            parts = parts._replace(netloc=f"****@{host}")
    return text if parts == original else parts.geturl()  # geturl() drops sqlite:///'s empty host


def settings_error_line(exc: Exception, *, option_names: dict[str, str] | None = None) -> str:
    """One line for a `ValidationError` / `SettingsError` of `Settings`: the environment
    variable (or the option, when `option_names` maps the field to one), the value given,
    what is wrong and what is allowed."""
    from pydantic import ValidationError

    names = option_names or {}
    if not isinstance(exc, ValidationError):
        # pydantic-settings' SettingsError: a complex value (dict, list) that is not JSON.
        text = " ".join(str(exc).split())
        field = _quoted_field(text)
        if field is not None:
            where = names.get(field) or f"{env_name(field)}{_origin(field)}"
            return f"{where} is not valid JSON (e.g. {_json_example(field)})"
        return f"invalid setting: {text}"
    return "; ".join(_error_part(error, names) for error in _first_per_field(exc))


def _first_per_field(exc: ValidationError) -> list[Any]:
    seen: set[str] = set()
    errors = []
    for error in exc.errors():
        field = _field_of(error["loc"])
        if error["type"] == "default_factory_not_called":  # follows from another field's error
            continue
        if field not in seen:
            seen.add(field)
            errors.append(error)
    return errors


def _field_of(loc: tuple[Any, ...]) -> str:
    """The flat field an error is about: ("alerts", "alert_p_high") -> alert_p_high, whose
    variable is FINSENT_ALERT_P_HIGH; "" for a check across settings (empty loc)."""
    from services.settings import GROUPS

    if not loc:
        return ""
    if str(loc[0]) in GROUPS:
        return str(loc[1]) if len(loc) > 1 else ""
    return str(loc[0])


def _error_part(error: Any, names: dict[str, str]) -> str:
    field = _field_of(error["loc"])
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not field:
        # A check across settings (e.g. Kafka security): its message names the variables, and
        # its input is every setting, secrets included, so it is never shown.
        return " ".join(message.split())
    given = shown_value(field, error.get("input"))
    # An option's value is the one typed on the command line; a variable's may be from .env.
    where = names[field] if field in names else env_name(field)
    origin = "" if field in names else _origin(field)
    return f"{where}={given!r}{origin}: {_lower_first(message)}{_allowed(field, error)}"


def _origin(field: str) -> str:
    """Where an error line says the value of `field` came from: its env file (" (from ./.env)"),
    or nothing when it came from the process environment (which wins over the file) or a default."""
    source = env_file_of(field)
    return f" (from {source})" if source is not None else ""


def env_file_of(field: str) -> str | None:
    """The env file (as configured, "./.env") that gave `field` its value in `Settings()` (as
    every command reads them), read the way pydantic-settings reads it; None when the process
    environment sets the variable (it wins over the file) or no env file does."""
    import os

    from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

    from services.settings import FlatSettings

    environment = EnvSettingsSource(FlatSettings)
    variable = env_name(field) if environment.case_sensitive else env_name(field).lower()
    if variable in environment.env_vars:
        return None
    files = FlatSettings.model_config.get("env_file")
    found = None
    for file in [files] if isinstance(files, str | os.PathLike) else list(files or ()):
        if DotEnvSettingsSource(FlatSettings, env_file=file).env_vars.get(variable) is not None:
            found = Path(file)  # a later file overrides an earlier one, as pydantic-settings reads them
    if found is None:
        return None
    return str(found) if found.is_absolute() else f"./{found}"


def _allowed(field: str, error: Any) -> str:
    """What to write instead, when pydantic's message does not already say it."""
    kind = str(error.get("type", ""))
    if kind.startswith("bool"):
        return " (use true or false)"
    if kind.startswith("int_"):
        return " (use a whole number)"
    if kind.startswith("float_"):
        return " (use a number)"
    return ""


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _quoted_field(text: str) -> str | None:
    import re

    match = re.search(r'field "([a-z0-9_]+)"', text)
    return match.group(1) if match else None


def _json_example(field: str) -> str:
    """An example of the JSON a complex setting takes, matching its type."""
    import json
    from typing import get_origin

    from services.settings import FlatSettings

    if field == "gate_recall_floors":
        return '{"topic": {"IPO": 0.1}}'
    info = FlatSettings.model_fields.get(field)
    default = info.get_default(call_default_factory=True) if info is not None else None
    if default:  # the default, as JSON, is an example of the right shape
        return json.dumps(default)
    origin = get_origin(info.annotation) if info is not None else None
    return "a JSON list" if origin in (list, tuple, set, frozenset) else "a JSON object"


def usage_error_line(exc: ClickException, *, command_path: str | None = None) -> str:
    """One line for a click usage error: the message and where to read the options.

    `command_path` ("finsent db current") stands in for the error's context when click
    raised it without one (an option given no value)."""
    message = " ".join(exc.format_message().split()).replace("Value error, ", "")
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else command_path
    if path:
        return f"{message} (see `{path} --help`)"
    return message
