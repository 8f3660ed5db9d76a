"""`finsent dashboard users ...` writes hashes nobody types; `finsent dashboard` checks its port."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dashboards.users_file import authenticate, read_users
from services.cli.app import app
from services.cli.dashboard import streamlit_command
from services.settings import get_settings


@pytest.fixture
def users_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "users.toml"
    monkeypatch.setenv("FINSENT_DASHBOARD_USERS_FILE", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_users_add_list_remove(users_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["dashboard", "users", "add", "alice", "--role", "analyst"], input="pass-word-1\npass-word-1\n"
    )
    assert result.exit_code == 0, result.output
    assert "pass-word-1" not in users_path.read_text(encoding="utf-8")
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
    unconfirmed = runner.invoke(app, ["dashboard", "users", "remove", "olga"])  # no terminal, no --yes
    assert unconfirmed.exit_code == 2 and "pass --yes to confirm" in unconfirmed.output
    assert "olga" in read_users(users_path)
    assert runner.invoke(app, ["dashboard", "users", "remove", "olga", "--yes"]).exit_code == 0
    assert "olga" not in read_users(users_path)
    assert runner.invoke(app, ["dashboard", "users", "remove", "olga", "--yes"]).exit_code == 2


def test_dashboard_refuses_a_port_in_use(users_path: Path) -> None:
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
