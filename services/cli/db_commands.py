"""`finsent db upgrade | current`: the database schema, migrated by Alembic.

Database problems (server down, wrong credentials, bad URL) end as one line naming the
database (password hidden), like every other user error of the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from services.cli.errors import fail
from services.settings import get_settings

T = TypeVar("T")

db_app = typer.Typer(help="Database schema (FINSENT_DATABASE_URL).", no_args_is_help=True)


def _quiet_alembic() -> None:
    # Alembic logs its plugin set-up and dialect at INFO; these commands print their own summary.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _guarded(action: Callable[[str], T]) -> tuple[str, T]:
    """Run `action(url)` on the configured database; turn database errors into `fail`."""
    from alembic.util import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from services.storage import redact

    url = get_settings().database_url
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


@db_app.command()
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Create or migrate the schema to the newest revision (safe to run again)."""
    _quiet_alembic()
    from services.storage import current_revision, upgrade_database

    shown, before = _guarded(current_revision)
    _, after = _guarded(lambda url: upgrade_database(url, revision=revision))
    if before == after:
        typer.echo(f"database {shown} is at revision {after}: nothing to do")
    else:
        typer.echo(f"database {shown} upgraded from revision {before or '(empty)'} to {after}")


@db_app.command()
def current() -> None:
    """Print the schema revision of the database and whether it is the newest."""
    _quiet_alembic()
    from services.storage import current_revision, head_revision

    shown, revision = _guarded(current_revision)
    head = head_revision()
    if revision is None:
        typer.echo(f"database {shown} has no schema yet (newest is {head}); run `finsent db upgrade`")
    elif revision == head:
        typer.echo(f"database {shown} is at revision {revision} (newest)")
    else:
        typer.echo(f"database {shown} is at revision {revision}; newest is {head}: run `finsent db upgrade`")
