"""`finsent dashboard users ...` writes hashes nobody types (into the database every replica
reads); `finsent dashboard` checks its port."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dashboards.users_file import UserEntry, authenticate
from services.cli.app import app
from services.cli.dashboard import streamlit_command
from services.settings import get_settings
from services.storage import list_dashboard_users, make_engine, session_factory


@pytest.fixture
def users_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The database URL the commands write users to (SQLite; tests/integration covers PostgreSQL)."""
    url = f"sqlite:///{tmp_path / 'finsent.db'}"
    monkeypatch.setenv("FINSENT_DATABASE_URL", url)
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FINSENT_DASHBOARD_USERS_FILE", str(tmp_path / "users.toml"))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def read_users(url: str) -> dict[str, UserEntry]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return {
                u.name: UserEntry(u.name, u.role, u.password_hash, u.email)  # type: ignore[arg-type]
                for u in list_dashboard_users(session)
            }
    finally:
        engine.dispose()


def test_users_add_list_remove(users_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    # The password prompt needs a terminal (without one: --password-stdin, tests/unit/test_cli_dashboard.py).
    monkeypatch.setattr("services.cli.common.stdin_is_interactive", lambda: True)
    result = runner.invoke(
        app, ["dashboard", "users", "add", "alice", "--role", "analyst"], input="pass-word-1\npass-word-1\n"
    )
    assert result.exit_code == 0, result.output
    assert b"pass-word-1" not in (tmp_path / "finsent.db").read_bytes()
    assert not (tmp_path / "users.toml").exists()  # the old per-host file is no longer written
    users = read_users(users_path)
    assert users["alice"].role == "analyst" and authenticate(users, "alice", "pass-word-1")

    result = runner.invoke(
        app,
        ["dashboard", "users", "add", "alice", "--role", "admin", "--password-stdin"],
        input="other-pass-2\n",
    )
    assert result.exit_code == 0 and "updated" in result.output
    assert authenticate(read_users(users_path), "alice", "other-pass-2").role == "admin"

    result = runner.invoke(
        app,
        [
            "dashboard",
            "users",
            "add",
            "olga",
            "--role",
            "viewer",
            "--no-password",
            "--email",
            "olga@example.com",
        ],
    )
    assert result.exit_code == 0
    listing = runner.invoke(app, ["dashboard", "users", "list"]).output
    assert "alice  admin  password" in listing and "olga  viewer  oidc only  olga@example.com" in listing
    assert "$2b$" not in listing

    assert (
        runner.invoke(app, ["dashboard", "users", "add", "bob", "--role", "root", "--no-password"]).exit_code
        == 2
    )
    # OIDC matches a verified e-mail only: an entry without one could never log in
    nameless = runner.invoke(app, ["dashboard", "users", "add", "bob@example.com", "--no-password"])
    assert nameless.exit_code == 2 and "--no-password needs --email" in nameless.output
    short = runner.invoke(app, ["dashboard", "users", "add", "bob", "--password-stdin"], input="short\n")
    assert short.exit_code == 2 and "at least 8" in short.output
    listed = json.loads(runner.invoke(app, ["dashboard", "users", "list", "--json"]).stdout)
    assert {"name": "olga", "role": "viewer", "login": "oidc only", "email": "olga@example.com"} in listed
    assert all("$2b$" not in json.dumps(entry) for entry in listed)
    monkeypatch.setattr("services.cli.common.stdin_is_interactive", lambda: False)
    unconfirmed = runner.invoke(app, ["dashboard", "users", "remove", "olga"])  # no terminal, no --yes
    assert unconfirmed.exit_code == 2 and "pass --yes to confirm" in unconfirmed.output
    assert "olga" in read_users(users_path)
    assert runner.invoke(app, ["dashboard", "users", "remove", "olga", "--yes"]).exit_code == 0
    assert "olga" not in read_users(users_path)
    assert runner.invoke(app, ["dashboard", "users", "remove", "olga", "--yes"]).exit_code == 2


def test_dashboard_refuses_a_port_in_use(users_path: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["dashboard", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot serve the dashboard on 127.0.0.1:{port}: already in use" in result.output


def test_streamlit_command_is_headless_on_the_configured_address() -> None:
    command = streamlit_command("0.0.0.0", 8600)
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("dashboards/app.py")
    assert {"--server.headless=true", "--server.address=0.0.0.0", "--server.port=8600"} <= set(command)
    # an uncaught exception's message (a path, a secret) stays in the server log
    assert "--client.showErrorDetails=none" in command


def test_import_file_moves_an_old_users_file_once(users_path: str, tmp_path: Path) -> None:
    from dashboards.users_file import UserEntry as Entry
    from dashboards.users_file import hash_password, write_users

    old = tmp_path / "users.toml"
    write_users(
        old,
        {
            "alice": Entry("alice", "admin", hash_password("alice-pass-1", rounds=4)),
            "olga": Entry("olga", "viewer", None, "olga@example.com"),
        },
    )
    runner = CliRunner()
    first = runner.invoke(app, ["dashboard", "users", "import-file"])  # FINSENT_DASHBOARD_USERS_FILE
    assert first.exit_code == 0, first.output
    assert f"imported 2 dashboard user(s) from {old}: alice, olga; 0 already" in first.stdout
    users = read_users(users_path)
    assert authenticate(users, "alice", "alice-pass-1") is not None  # the same bcrypt hash
    assert users["olga"].email == "olga@example.com" and users["olga"].password_hash is None

    # changed in the database since: importing again neither reverts it nor adds anyone
    changed = runner.invoke(
        app,
        ["dashboard", "users", "add", "alice", "--role", "viewer", "--password-stdin"],
        input="new-pass-22\n",
    )
    assert changed.exit_code == 0, changed.output
    again = runner.invoke(app, ["dashboard", "users", "import-file", str(old)])
    assert again.exit_code == 0 and "imported 0 dashboard user(s)" in again.stdout
    assert "2 already in the database" in again.stdout
    assert authenticate(read_users(users_path), "alice", "new-pass-22").role == "viewer"  # type: ignore[union-attr]

    missing = runner.invoke(app, ["dashboard", "users", "import-file", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "nope.toml: no such file" in missing.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[users.x]\nrole = 'root'\n", encoding="utf-8")
    refused = runner.invoke(app, ["dashboard", "users", "import-file", str(bad)])
    assert refused.exit_code == 2 and "role must be one of" in refused.output
    assert "Traceback" not in refused.output
