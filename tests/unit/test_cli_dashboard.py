"""`finsent dashboard` and `finsent dashboard users …`: one line, exit 2, before anything is
read, written or served, for a password nobody can type, a database that is not there and an
address the server cannot listen on. (tests/dashboards/test_dashboard_cli.py runs the users
commands end to end.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.settings import get_settings

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory
    return tmp_path / "data" / "finsent.db"


def invoke(db: Path, *args: str, input: str | None = None) -> Any:
    get_settings.cache_clear()
    try:
        env = {**CLEAN_ENV, "FINSENT_HOME": str(db.parent.parent / "home")}
        env["FINSENT_DATABASE_URL"] = f"sqlite:///{db}"
        return CliRunner().invoke(app, ["dashboard", *args], input=input, env=env)
    finally:
        get_settings.cache_clear()


def one_line_error(result: Any, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr == f"finsent: error: {message}\n"


def test_adding_a_user_without_a_terminal_needs_password_stdin(db: Path) -> None:
    result = invoke(db, "users", "add", "bob")  # CliRunner's stdin is no terminal
    one_line_error(result, "no terminal to ask for a password; pipe it with --password-stdin")
    assert "Password" not in result.stdout  # failed before asking
    assert not db.parent.exists()
    result = invoke(db, "users", "add", "bob", "--password-stdin", input="correct-horse\n")
    assert result.exit_code == 0, result.output
    assert "added dashboard user bob (viewer)" in result.stdout


def test_listing_users_of_a_database_that_is_not_there_creates_nothing(db: Path) -> None:
    one_line_error(
        invoke(db, "users", "list"),
        f"database sqlite:///{db}: no database at {db} (run `finsent db upgrade` to create it)",
    )
    assert not db.parent.exists()


def test_an_address_it_cannot_listen_on_names_the_host_setting(db: Path) -> None:
    result = invoke(db, "--host", "192.0.2.1", "--port", "8501")  # TEST-NET-1: not this machine's
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("finsent: error: cannot serve the dashboard on 192.0.2.1:8501: ")
    assert line.endswith(
        "; set --port (FINSENT_DASHBOARD_PORT) to a free port or --host (FINSENT_DASHBOARD_HOST) "
        "to an address of this machine"
    )
    assert not db.parent.exists()
