"""Helpers shared by the CLI commands: settings lookups and error translation.

Every command that touches the broker or the database goes through these, so that an
unreachable service or a bad URL ends as one line naming it, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

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


def printable(value: object) -> str:
    """`value` as text safe to print on a terminal: every character that is not printable
    (control characters, escape sequences, bidirectional overrides, line separators) is
    shown as its Python escape. News and ids come from outside; printed raw, an escape
    sequence could clear or recolour the operator's terminal or hide what follows it."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
