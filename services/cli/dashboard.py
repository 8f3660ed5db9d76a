"""`finsent dashboard` (serve the analyst dashboard) and `finsent dashboard users add|list|remove`.

The server is Streamlit's own CLI, headless, on the address and port from the settings,
exec'd in place of the `finsent` process once the checks are done: Streamlit owns its event
loop and signal handling, and SIGTERM/SIGINT then reach the server directly. The database
is migrated first (like every other service), and a port already in use ends as one line,
not as a traceback from the web server.

Users are managed here so nobody hand-writes a bcrypt hash: the password is prompted for
(twice, hidden) or read from stdin with --password-stdin for scripts, and only its hash is
written, to the database's `dashboard_users` table, which every dashboard replica reads.
`import-file` moves the users of the TOML file older versions kept on each dashboard host
(FINSENT_DASHBOARD_USERS_FILE) into the table: explicitly, once per deployment, never on its
own, so a user removed from the table cannot come back from a forgotten file.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from services.cli.choices import Role
from services.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    YesOption,
    confirm_destructive,
    echo_json,
    in_transaction,
)
from services.cli.errors import fail, require_files

dashboard_app = typer.Typer(
    help="The analyst dashboard (Streamlit): `finsent dashboard` serves it.",
    invoke_without_command=True,
)
users_app = typer.Typer(
    help="Dashboard users: bcrypt-hashed passwords and roles in the database (table dashboard_users).",
    no_args_is_help=True,
)
dashboard_app.add_typer(users_app, name="users")


def app_path() -> Path:
    """dashboards/app.py, found through the import system (not `dashboards.__file__`: a
    directory named `dashboards` on sys.path, such as tests/dashboards, can shadow the
    package itself as a namespace package while its modules still load from here)."""
    spec = importlib.util.find_spec("dashboards.app")
    if spec is None or spec.origin is None:
        fail("the dashboards package is not installed (pip install -e .)")
    return Path(spec.origin).resolve()


def port_in_use(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on, or None if it can (checked by binding it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "already in use"
            return exc.strerror or str(exc)
    return None


def streamlit_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.headless=true",
        f"--server.address={host}",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--global.developmentMode=false",
        # The browser gets a generic message for an uncaught exception; the message and the
        # traceback (which may quote a file, a secret or a query) go to the server log only.
        "--client.showErrorDetails=none",
        "--client.toolbarMode=viewer",  # no "Deploy" or developer menu for analysts
    ]


@dashboard_app.callback()
def dashboard(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on [FINSENT_DASHBOARD_HOST]")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on [FINSENT_DASHBOARD_PORT]")
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Serve the analyst dashboard (migrates the database first)."""
    if ctx.invoked_subcommand is not None:
        return
    from services.cli.common import guarded_database, quiet_alembic
    from services.settings import get_settings
    from services.storage import upgrade_database

    settings = get_settings()
    host = host or settings.dashboard.dashboard_host
    port = port if port is not None else settings.dashboard.dashboard_port
    problem = port_in_use(host, port)
    if problem is not None:
        fail(
            f"cannot serve the dashboard on {host}:{port}: {problem}; set --port (FINSENT_DASHBOARD_PORT) "
            "to a free port or --host (FINSENT_DASHBOARD_HOST) to an address of this machine"
        )
    quiet_alembic()
    shown, _ = guarded_database(upgrade_database)
    typer.echo(f"dashboard  http://{host}:{port}  (database {shown})")
    _note_users(settings.dashboard.dashboard_users_file)
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the Streamlit server (exec, not a child): signals from a terminal, systemd or a
    # test harness reach the server itself, and no orphaned server outlives a killed parent.
    command = streamlit_command(host, port)
    os.execv(command[0], command)


def _note_users(path: Path) -> None:
    """Say on start-up when nobody can log in yet, or when an old users file still holds
    users the database lacks (they cannot log in until imported)."""
    from dashboards.users_file import UsersFileError, read_users
    from services.storage import list_dashboard_users

    known = {user.name for user in in_transaction(list_dashboard_users)}
    try:
        in_file = set(read_users(path))
    except UsersFileError:
        in_file = set()
    missing = in_file - known
    if missing:
        typer.echo(
            f"note: {len(missing)} user(s) in {path} are not in the database and cannot log in; "
            f"move them with `finsent dashboard users import-file`",
            err=True,
        )
    elif not known:
        typer.echo(
            "note: no dashboard users yet; add one with `finsent dashboard users add NAME --role admin` "
            "(or configure OIDC in .streamlit/secrets.toml, see docs/dashboard.md)",
            err=True,
        )


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="Login name (letters, digits, . _ @ + -)")],
    role: Annotated[Role, typer.Option(help="What the user may do (docs/dashboard.md)")] = Role.viewer,
    email: Annotated[str | None, typer.Option(help="E-mail that matches this user's OIDC login")] = None,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="OIDC-only user: a role, no password login")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin")
    ] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Add a user, or change an existing user's role, e-mail and password."""
    from dashboards.users_file import UsersFileError, check_name, hash_password
    from services.storage import StoredDashboardUser, upsert_dashboard_user

    try:
        check_name(name)
    except UsersFileError as exc:
        fail(str(exc))
    if no_password and not email:
        # OIDC logins match an entry by its verified e-mail only, never by name.
        fail("--no-password needs --email: an OIDC login is matched by its verified e-mail address only")
    from services.cli.common import stdin_is_interactive

    if not no_password and not password_stdin and not stdin_is_interactive():
        # Checked before anything is read: getpass would fall back to echoing on a pipe.
        fail("no terminal to ask for a password; pipe it with --password-stdin")
    password_hash = None
    if not no_password:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        try:
            password_hash = hash_password(password)
        except UsersFileError as exc:
            fail(str(exc))
    user = StoredDashboardUser(name, role.value, password_hash, email)
    new = in_transaction(lambda session: upsert_dashboard_user(session, user))
    typer.echo(f"{'added' if new else 'updated'} dashboard user {name} ({role.value})")


@users_app.command("list")
def users_list(as_json: JsonOption = False, database_url: DatabaseUrlOption = None) -> None:
    """List users and roles (never the hashes).

    --json: an array of {name, role, login ("password" or "oidc only"), email}.
    """
    from services.cli.common import guarded_database
    from services.storage import list_dashboard_users, require_database

    guarded_database(require_database)  # only reads: a missing SQLite file is not created
    users = in_transaction(list_dashboard_users)
    if as_json:
        echo_json(
            [
                {
                    "name": u.name,
                    "role": u.role,
                    "login": "password" if u.password_hash else "oidc only",
                    "email": u.email,
                }
                for u in users
            ]
        )
        return
    if not users:
        typer.echo("no dashboard users yet")
        return
    for user in users:
        login = "password" if user.password_hash else "oidc only"
        typer.echo(f"{user.name}  {user.role}  {login}  {user.email or ''}".rstrip())


@users_app.command("remove")
def users_remove(
    name: Annotated[str, typer.Argument(help="Login name")],
    yes: YesOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Remove a user (asks first); their open dashboard sessions end at their next click.

    Exit codes: 0 removed; 1 not confirmed; 2 no such user, or no terminal to ask on and no --yes.
    """
    from services.storage import get_dashboard_user, remove_dashboard_user

    if in_transaction(lambda session: get_dashboard_user(session, name)) is None:
        fail(f"no dashboard user {name!r}")
    confirm_destructive(f"Remove dashboard user {name}?", yes=yes)
    if not in_transaction(lambda session: remove_dashboard_user(session, name)):
        fail(f"no dashboard user {name!r}")
    typer.echo(f"removed dashboard user {name}")


@users_app.command("import-file")
def users_import_file(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="Users file to import (default: FINSENT_DASHBOARD_USERS_FILE)", show_default=False
        ),
    ] = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Move the users of a users file (TOML, as older versions kept it) into the database; idempotent.

    Users whose name is already in the database are kept as they are there (a role or password
    changed since is not reverted), so running it again adds nobody. The file is only read:
    delete it once every host's users are imported.
    """
    from dashboards.users_file import UsersFileError, read_users
    from services.settings import get_settings
    from services.storage import StoredDashboardUser, add_missing_dashboard_users

    source = path if path is not None else get_settings().dashboard.dashboard_users_file
    require_files([source])
    try:
        entries = read_users(source)
    except UsersFileError as exc:
        fail(str(exc))
    users = [StoredDashboardUser(e.name, e.role, e.password_hash, e.email) for e in entries.values()]
    added = in_transaction(lambda session: add_missing_dashboard_users(session, users))
    kept = len(users) - len(added)
    typer.echo(
        f"imported {len(added)} dashboard user(s) from {source}"
        + (f": {', '.join(added)}" if added else "")
        + f"; {kept} already in the database, kept as they are"
    )
