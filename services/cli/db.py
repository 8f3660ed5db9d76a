"""`finsent db upgrade | current`: the database schema, migrated by Alembic.

Database problems (server down, wrong credentials, bad URL) end as one line naming the
database (password hidden), like every other user error of the CLI.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from services.cli.common import DatabaseUrlOption, guarded_database, quiet_alembic
from services.cli.errors import fail

db_app = typer.Typer(help="Database schema (FINSENT_DATABASE_URL).", no_args_is_help=True)

# Alembic's relative revisions: head-1, 0003+2, +1 (from the database's revision).
_RELATIVE = re.compile(r"(?P<base>[^+-]*)(?P<sign>[+-])(?P<steps>[0-9]+)")


def resolve_target(revision: str, current: str | None) -> str | None:
    """The revision `db upgrade REVISION` goes to from `current`, as an id (None: base, the
    empty schema), or a one-line failure: past the newest migration, or older than the
    database (`db upgrade` never goes backwards). An unknown name is left to Alembic, whose
    error names it; so is a history that is not one line of migrations. Relative targets
    (`head-1`, `0003+2`, `+1`) are counted here because Alembic resolves them only inside its
    private upgrade planning (`ScriptDirectory.get_revisions` refuses them)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from services.storage.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    order = [r.revision for r in reversed(list(script.walk_revisions()))]  # oldest first
    if current is not None and current not in order:
        return revision  # a database newer than this code: Alembic says so
    relative = _RELATIVE.fullmatch(revision.strip())
    try:
        if relative is None:
            found = script.get_revisions(revision)
            if len(found) > 1:
                return revision
            target = order.index(found[0].revision) if found and found[0] is not None else -1
        else:
            base = relative["base"]
            if base:
                found = script.get_revisions(base)
                if len(found) != 1 or found[0] is None:
                    return revision
                start = order.index(found[0].revision)
            else:
                start = order.index(current) if current is not None else -1
            steps = int(relative["steps"])
            target = start + steps if relative["sign"] == "+" else start - steps
    except (CommandError, ValueError):
        return revision  # unknown (or ambiguous): Alembic's own message names it
    newest = order[-1]
    if target >= len(order):
        fail(
            f"no revision after the newest ({newest}): {revision!r} goes {target - len(order) + 1} past it; "
            f"`finsent db upgrade` (head) migrates to {newest}"
        )
    backwards = "`finsent db upgrade` never goes backwards (migrations are not undone)"
    if target < -1:
        fail(f"{revision!r} goes back past base (the empty schema): {backwards}")
    at = order.index(current) if current is not None else -1
    if target < at:
        wanted = order[target] if target >= 0 else "base (the empty schema)"
        fail(f"target revision {wanted} is older than the database's revision {current}: {backwards}")
    return order[target] if target >= 0 else None


@db_app.command()
def upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create or migrate the schema to the newest revision (safe to run again)."""
    quiet_alembic()
    from services.storage import current_revision, upgrade_database

    shown, before = guarded_database(current_revision)
    target = resolve_target(revision, before)
    if target is None:  # base: nothing to create
        typer.echo(f"database {shown} is at revision {before or '(empty)'}: nothing to do")
        return
    _, after = guarded_database(lambda url: upgrade_database(url, revision=target))
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

    shown, revision = guarded_database(lambda url: current_revision(url, must_exist=True))
    head = head_revision()
    if revision is None:
        typer.echo(f"database {shown} has no schema yet (newest is {head}); run `finsent db upgrade`")
    elif revision == head:
        typer.echo(f"database {shown} is at revision {revision} (newest)")
    else:
        typer.echo(f"database {shown} is at revision {revision}; newest is {head}: run `finsent db upgrade`")
