"""`finsent db upgrade | current`: the database schema, migrated by Alembic.

Database problems (server down, wrong credentials, bad URL) end as one line naming the
database (password hidden), like every other user error of the CLI.
"""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli.common import DatabaseUrlOption, guarded_database, quiet_alembic

db_app = typer.Typer(help="Database schema (FINSENT_DATABASE_URL).", no_args_is_help=True)


@db_app.command()
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create or migrate the schema to the newest revision (safe to run again)."""
    quiet_alembic()
    from services.storage import current_revision, upgrade_database

    shown, before = guarded_database(current_revision)
    _, after = guarded_database(lambda url: upgrade_database(url, revision=revision))
    if before == after:
        typer.echo(f"database {shown} is at revision {after}: nothing to do")
    else:
        typer.echo(f"database {shown} upgraded from revision {before or '(empty)'} to {after}")


@db_app.command()
def current(
    database_url: DatabaseUrlOption = None,
) -> None:
    """Print the schema revision of the database and whether it is the newest."""
    quiet_alembic()
    from services.storage import current_revision, head_revision

    shown, revision = guarded_database(current_revision)
    head = head_revision()
    if revision is None:
        typer.echo(f"database {shown} has no schema yet (newest is {head}); run `finsent db upgrade`")
    elif revision == head:
        typer.echo(f"database {shown} is at revision {revision} (newest)")
    else:
        typer.echo(f"database {shown} is at revision {revision}; newest is {head}: run `finsent db upgrade`")
