"""`finsent config`: the effective settings, each with where it came from, secrets masked.

The sources are asked the same way `Settings` asks them (pydantic-settings' own source
classes, in its order: environment, then the .env file, then secret files, then the
default), so what this prints is what every command sees, not a re-implementation of it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from services.cli.common import JsonOption, echo_json
from services.cli.errors import env_name, shown_value


def setting_sources() -> dict[str, str]:
    """Field name -> the source its value came from (fields absent here are defaults)."""
    from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource, SecretsSettingsSource

    from services.settings import FlatSettings

    # FlatSettings: the variables as Settings reads them, one per field, before they are grouped.
    found: dict[str, str] = {}
    readers: list[tuple[str, Any]] = [
        ("environment", EnvSettingsSource(FlatSettings)),
        (".env", DotEnvSettingsSource(FlatSettings)),
    ]
    if FlatSettings.model_config.get("secrets_dir"):
        readers.append(("secret file", SecretsSettingsSource(FlatSettings)))
    for source, reader in readers:
        for field in reader():
            found.setdefault(field, source)
    return found


def effective_settings() -> list[dict[str, Any]]:
    """[{group, name, variable, value, source}] for every setting, values masked, group by group."""
    from services.settings import FIELD_GROUPS, FlatSettings, get_settings, setting_value

    settings = get_settings()
    sources = setting_sources()
    rows = []
    for field in FlatSettings.model_fields:
        value = setting_value(settings, field)
        rows.append(
            {
                "group": FIELD_GROUPS.get(field, ""),
                "name": field,
                "variable": env_name(field),
                "value": _jsonable(field, value),
                "source": sources.get(field, "default"),
            }
        )
    return rows


def _jsonable(field: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):  # gate_recall_floors: numbers, no secrets
        return value
    return shown_value(field, value)


def config(
    as_json: JsonOption = False,
    changed: Annotated[
        bool, typer.Option("--changed", help="Only settings that are not at their default")
    ] = False,
) -> None:
    """The effective settings (FINSENT_* variables), where each came from, secrets masked.

    Sources, highest first: environment, .env (in the working directory), secret file,
    default. Passwords in URLs and secret values are shown as ****.

    Grouped as in services/settings.py (settings.kafka, settings.alerts, ...); FINSENT_HOME
    belongs to none.

    --json: an array of {group, name, variable, value, source}.
    """
    rows = effective_settings()
    if changed:
        rows = [r for r in rows if r["source"] != "default"]
    if as_json:
        echo_json(rows)
        return
    from services.cli.subscriptions import format_table

    table = [(r["group"] or "-", r["variable"], _text(r["value"]), r["source"]) for r in rows]
    typer.echo(format_table(("GROUP", "VARIABLE", "VALUE", "SOURCE"), table))


def _text(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        import json

        return json.dumps(value)
    return str(value)
