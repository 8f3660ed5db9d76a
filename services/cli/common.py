"""Helpers shared by the CLI commands: settings lookups and error translation.

Every command that touches the broker or the database goes through these, so that an
unreachable service or a bad URL ends as one line naming it, never a traceback.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from services.broker.errors import BrokerError
from services.cli.choices import TrainMethod
from services.cli.errors import fail, shown_value
from services.settings import database_url_problem, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from services.retry import RetryPolicy

T = TypeVar("T")

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON instead of a table (the keys are listed above; new keys may be added, none renamed)",
    ),
]


def echo_json(value: Any) -> None:
    """One JSON document on stdout; datetimes as ISO 8601 strings."""
    typer.echo(json.dumps(value, default=_json_default, ensure_ascii=False))


def _json_default(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def configured_bootstrap() -> str:
    """FINSENT_KAFKA_BOOTSTRAP, or a one-line failure saying how to set it."""
    bootstrap = get_settings().kafka.kafka_bootstrap
    if bootstrap is None:
        fail("no Kafka broker configured: set FINSENT_KAFKA_BOOTSTRAP=host:port")
    return bootstrap


@contextmanager
def broker_errors() -> Iterator[None]:
    """Turn a `BrokerError` inside the block into `fail`."""
    try:
        yield
    except BrokerError as exc:
        fail(str(exc))


YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal)")
]


def _setting_override(field: str, option: str) -> Callable[[typer.Context, str | None], str | None]:
    """The callback of an option that stands for a FINSENT_* setting.

    The value becomes the environment variable for the rest of the command, so it reaches
    every part that reads the settings (including the services `finsent run` starts and the
    dashboard server `finsent dashboard` becomes), and it is checked like the variable is:
    a bad value is one line naming the option. The variable is restored when the command ends.
    """
    import os

    variable = f"FINSENT_{field.upper()}"

    def apply(ctx: typer.Context, value: str | None) -> str | None:
        if value is None or ctx.resilient_parsing:  # resilient: shell completion, nothing runs
            return value
        from pydantic import ValidationError
        from pydantic_settings import SettingsError

        from services.cli.errors import settings_error_line

        before = os.environ.get(variable)

        def restore() -> None:
            if before is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = before
            get_settings.cache_clear()

        os.environ[variable] = value
        get_settings.cache_clear()
        try:
            get_settings()
        except (ValidationError, SettingsError) as exc:
            restore()
            line = settings_error_line(exc, option_names={field: option})
            raise typer.BadParameter(line.removeprefix(f"{option}={shown_value(field, value)!r}: ")) from None
        ctx.call_on_close(restore)
        return value

    return apply


DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        callback=_setting_override("database_url", "--database-url"),
        help="Database, e.g. postgresql://user@host/db or sqlite:///path.db "
        "(default: FINSENT_DATABASE_URL, else SQLite in FINSENT_HOME)",
        show_default=False,
    ),
]
PartitionsOption = Annotated[
    str | None,
    typer.Option(
        "--partitions",
        metavar="N",
        callback=_setting_override("topic_partitions", "--partitions"),
        help="Partitions of news.raw, news.scored and news.dlq when created (default: "
        "FINSENT_TOPIC_PARTITIONS); caps how many scorer workers share the stream",
        show_default=False,
    ),
]
BootstrapServerOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-server",
        metavar="HOST:PORT[,HOST:PORT]",
        callback=_setting_override("kafka_bootstrap", "--bootstrap-server"),
        help="Kafka bootstrap servers (default: FINSENT_KAFKA_BOOTSTRAP)",
        show_default=False,
    ),
]


def stdin_is_interactive() -> bool:
    import sys

    return sys.stdin is not None and sys.stdin.isatty()


def confirm_destructive(question: str, *, yes: bool) -> None:
    """Ask before deleting something; without a terminal to ask on, refuse (exit 2) unless
    `--yes` was given, so a script never deletes by accident or hangs on a prompt. A "no"
    ends the command with exit 1, nothing changed."""
    if yes:
        return
    if not stdin_is_interactive():
        fail(f"{question.rstrip('?')}: not confirmed (no terminal to ask on); pass --yes to confirm")
    confirm(question, yes=False)


def confirm(question: str, *, yes: bool) -> None:
    """Ask a yes/no question (default no); a "no", or no answer, ends the command with exit 1,
    nothing changed."""
    if yes:
        return
    try:
        confirmed = typer.confirm(question, default=False)
    except typer.Abort:
        confirmed = False
    if not confirmed:
        fail("not confirmed; nothing changed (pass --yes to skip the question)", code=1)


def quiet_alembic() -> None:
    # Alembic logs its plugin set-up and dialect at INFO; the commands print their own summary.
    logging.getLogger("alembic").setLevel(logging.WARNING)


# A service started while its database is briefly away (a restart, a failover, a network cut:
# an orchestrator replacing a worker during an outage, or starting the pipeline before the
# database is up) waits this long for it instead of exiting; one-shot commands fail at once.
SERVICE_DATABASE_WAIT_SECONDS = 120.0


def database_wait_policy(wait_seconds: float) -> RetryPolicy:
    """How a service retries meanwhile: the one policy of services.retry (0.5 s doubling to
    5 s, jittered so that workers replaced together do not knock together), giving up after
    `wait_seconds`. (Imported here, not at the top: services.retry loads SQLAlchemy, which
    most commands' start-up does not need.)"""
    from services.retry import RetryPolicy

    return RetryPolicy(initial=0.5, max_delay=5.0, max_elapsed=wait_seconds)


_UNREACHABLE = (
    "connection refused",
    "timeout expired",
    "server closed the connection",
    "connection reset",
    "no route to host",
    "network is unreachable",
    "could not receive data",
    "could not send data",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
)


def database_unreachable(message: str) -> bool:
    """Whether a database error's message says the server could not be reached (worth
    waiting for), rather than that it refused us (auth, missing database, permissions)."""
    text = message.lower()
    return any(marker in text for marker in _UNREACHABLE)


def guarded_database(
    action: Callable[[str], T],
    url: str | None = None,
    *,
    wait_seconds: float = 0.0,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> tuple[str, T]:
    """Run `action(url)` on the configured (or given) database; database errors become `fail`.
    With `wait_seconds`, an unreachable server is retried (with a line on stderr each time,
    pauses as `database_wait_policy` says) until that long has passed. Returns the URL with its
    password hidden, and the action's result."""
    from alembic.util import CommandError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from services.retry import backoff_delays, retries_exhausted
    from services.storage import redact

    url = url if url is not None else get_settings().database.database_url
    try:  # the settings check their URL; one given here could still be a port that is not a number
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        problem = database_url_problem(url) or " ".join(str(exc).split())
        fail(f"invalid FINSENT_DATABASE_URL {shown_value('database_url', url)}: {problem}")
    shown = redact(url)
    policy = database_wait_policy(wait_seconds)
    delays = backoff_delays(policy, rng or random.Random())
    start = clock()
    attempts = 0
    while True:
        try:
            return shown, action(url)
        except DBAPIError as exc:  # OperationalError & co: unreachable, auth, permissions
            attempts += 1
            detail = " ".join(str(exc.orig).split()) if exc.orig is not None else type(exc).__name__
            waited = clock() - start
            if database_unreachable(detail):
                delay = next(delays)
                if not retries_exhausted(policy, attempts=attempts, elapsed=waited + delay):
                    typer.echo(
                        f"database {shown} unreachable ({detail}); retrying in {delay:.1f} s "
                        f"(waited {waited:.0f} of {wait_seconds:g} s)",
                        err=True,
                    )
                    sleep(delay)
                    continue
            fail(f"database {shown}: {detail}")
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:  # ImportError: a driver not installed
            fail(f"invalid FINSENT_DATABASE_URL {shown}: {' '.join(str(exc).split())}")
        except CommandError as exc:  # e.g. an unknown revision
            fail(f"database {shown}: {' '.join(str(exc).split())}")
        except OSError as exc:  # e.g. a SQLite directory that cannot be created
            fail(f"database {shown}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))


def in_transaction(action: Callable[[Session], T], *, read_only: bool = False) -> T:
    """`action(session)` in one transaction on the configured database, migrated first;
    database errors become `fail`. For the short commands (subscriptions, labels, models).
    `read_only` (list and show commands): a SQLite file that does not exist is an error, not
    created, so a typo in FINSENT_DATABASE_URL is not answered with an empty list."""
    quiet_alembic()  # before services.storage imports alembic, whose plugins log as they load
    from services.storage import make_engine, require_database, session_factory, upgrade_database

    def run(url: str) -> T:
        if read_only:
            require_database(url)
        upgrade_database(url)
        engine = make_engine(url)
        try:
            with session_factory(engine).begin() as session:
                return action(session)
        finally:
            engine.dispose()

    return guarded_database(run)[1]


def chosen_encoder(choice: str | None, *, install_missing: bool = False) -> str:
    """The encoder folder for `--encoder`/FINSENT_BASE_MODEL: a catalogue name (`finsent
    encoders list`) or a folder; unset means the packaged MiniLM. With `install_missing` a
    named encoder whose packages are installed but which is not yet in the model store is
    assembled first (once, with a progress bar); otherwise, or without its packages, one line
    says what to install."""
    from bert_core.encoders import encoder_path, find_spec, install, installed_dir, locate_parts

    settings = get_settings()
    name = choice if choice is not None else settings.training.base_model
    spec = find_spec(name) if name else None
    missing = install_missing and spec is not None and installed_dir(spec, settings.encoders_dir) is None
    if missing and spec is not None and spec.assembled:  # (a packaged one: encoder_path says what to install)
        locate_parts(spec)  # its packages first: without them, one error naming them, nothing said before
        typer.echo(f"assembling encoder {spec.name} into {settings.encoders_dir} (once)", err=True)
        install(spec, settings.encoders_dir)
    return encoder_path(name, settings.encoders_dir)


RetrainMethodOption = Annotated[
    TrainMethod | None,
    typer.Option(
        "--method",
        callback=_setting_override("retrain_method", "--method"),
        help="full fine-tuning, or LoRA adapters merged into the model (default: FINSENT_RETRAIN_METHOD)",
        show_default=False,
    ),
]
