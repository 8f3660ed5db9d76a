"""Dashboard users in the database, on PostgreSQL and SQLite: what `finsent dashboard users`
writes is what the dashboard's login reads (dashboards.data.users), from any host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from dashboards.data.users import all_users, user_named
from dashboards.users_file import UserEntry, authenticate, hash_password, write_users
from services.cli import app
from services.settings import get_settings
from services.storage import session_factory, upgrade_database

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FINSENT_DASHBOARD_USERS_FILE", str(tmp_path / "users.toml"))
    monkeypatch.delenv("FINSENT_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    return CliRunner()


def _login(engine: Engine, name: str, password: str) -> UserEntry | None:
    """What the dashboard's password form decides (dashboards.auth), without the page."""
    with session_factory(engine)() as session:
        found = user_named(session, name=name)
    return authenticate({name: found} if found else {}, name, password)


def test_users_written_by_the_cli_log_in_through_the_data_layer(
    cli: CliRunner, database_url: str, engine: Engine
) -> None:
    upgrade_database(database_url)
    name = f"u{id(cli)}"
    db = ["--database-url", database_url]
    added = cli.invoke(
        app,
        ["dashboard", "users", "add", name, "--role", "analyst", "--password-stdin", *db],
        input="pass-word-1\n",
    )
    assert added.exit_code == 0, added.output
    assert (entry := _login(engine, name, "pass-word-1")) is not None and entry.role == "analyst"
    assert _login(engine, name, "wrong-pass-1") is None
    assert _login(engine, "nobody-here", "pass-word-1") is None

    listed = json.loads(cli.invoke(app, ["dashboard", "users", "list", "--json", *db]).stdout)
    assert {"name": name, "role": "analyst", "login": "password", "email": None} in listed

    removed = cli.invoke(app, ["dashboard", "users", "remove", name, "--yes", *db])
    assert removed.exit_code == 0, removed.output
    assert _login(engine, name, "pass-word-1") is None
    with session_factory(engine)() as session:
        assert name not in all_users(session)


def test_import_file_is_idempotent(cli: CliRunner, database_url: str, engine: Engine, tmp_path: Path) -> None:
    upgrade_database(database_url)
    suffix = f"{id(cli)}"
    old = tmp_path / "old-users.toml"
    write_users(
        old,
        {
            f"a{suffix}": UserEntry(f"a{suffix}", "admin", hash_password("alice-pass-1", rounds=4)),
            f"o{suffix}": UserEntry(f"o{suffix}", "viewer", None, f"o{suffix}@example.com"),
        },
    )
    db = ["--database-url", database_url]
    first = cli.invoke(app, ["dashboard", "users", "import-file", str(old), *db])
    assert first.exit_code == 0, first.output
    assert "imported 2 dashboard user(s)" in first.stdout
    assert _login(engine, f"a{suffix}", "alice-pass-1") is not None
    again = cli.invoke(app, ["dashboard", "users", "import-file", str(old), *db])
    assert again.exit_code == 0 and "imported 0 dashboard user(s)" in again.stdout
    with session_factory(engine)() as session:
        users = all_users(session)
    assert users[f"o{suffix}"].email == f"o{suffix}@example.com" and users[f"o{suffix}"].password_hash is None
