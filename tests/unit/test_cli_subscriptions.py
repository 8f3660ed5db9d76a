"""`finsent subscriptions add | list | remove | test` on SQLite; validation errors are one line
and store nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.settings import get_settings
from services.storage import upgrade_database

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "finsent.db"


def invoke(db: Path, *args: str, input: str | None = None, **env: str) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            app,
            ["subscriptions", *args],
            input=input,
            env={**CLEAN_ENV, "FINSENT_DATABASE_URL": f"sqlite:///{db}", **env},
        )
    finally:
        get_settings.cache_clear()


COLUMNS = ["NAME", "CHANNEL", "TARGET", "SCOPES", "KEYS", "MIN", "SEVERITY", "DELIVERY", "ENABLED"]
HOOK = ["--channel", "webhook", "--target", "https://hooks.example.com/in", "--secret-ref", "env:HOOK_KEY"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "x", *HOOK[:4]], "a webhook needs --secret-ref"),
        (["--name", "x", *HOOK[:2], "--target", "hooks.example.com", *HOOK[4:]], "not an http(s) URL"),
        (["--name", "x", *HOOK, "--key", "Energy"], "unknown topic; did you mean 'Energy / Oil'?"),
        # A bad --min-severity or --channel is a click choice error: tests/unit/test_cli_usage.py.
        (["--name", "x", *HOOK[:4], "--secret-ref", "s3cr3t"], "must be env:NAME or file:/absolute/path"),
        (["--name", "x", "--channel", "email", "--target", "desk"], "not an e-mail address"),
        (["--name", "x", "--channel", "log", "--digest-minutes", "0"], "--digest-minutes 0"),
        (
            ["--name", "x", *HOOK[:2], "--target", "http://169.254.169.254/latest", *HOOK[4:]],
            "link-local address is not allowed",
        ),
        (
            ["--name", "x", "--channel", "slack", "--target", "http://127.0.0.1:6379/"],
            "loopback address is not allowed (the operator can allow it in FINSENT_OUTBOUND_ALLOW)",
        ),
    ],
)
def test_invalid_input_is_one_line_and_stores_nothing(db: Path, args: list[str], message: str) -> None:
    result = invoke(db, "add", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("finsent: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "s3cr3t" not in result.stderr
    assert not db.exists()  # validated before the database was touched


def test_add_list_test_remove(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_KEY", raising=False)
    upgrade_database(f"sqlite:///{db}")  # as `finsent db upgrade`: a list creates no database
    result = invoke(db, "list")
    assert result.exit_code == 0 and "no subscriptions" in result.stdout

    result = invoke(db, "add", "--name", "desk", *HOOK, "--key", "Energy / Oil", "--key", "$xom",
                    "--min-severity", "high")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "added subscription desk: webhook https://hooks.example.com/in" in result.stdout
    assert "topic:Energy / Oil, ticker:XOM; severity >= high; immediate" in result.stdout
    assert "note: secret env:HOOK_KEY: environment variable HOOK_KEY is not set here" in result.stderr

    result = invoke(db, "add", "--name", "stdout", "--channel", "log", "--target", "stdout",
                    "--scope", "market", "--digest-minutes", "15")  # fmt: skip
    assert result.exit_code == 0, result.output

    result = invoke(db, "add", "--name", "desk", "--channel", "log")
    assert result.exit_code == 2 and "a subscription named 'desk' already exists" in result.stderr

    result = invoke(db, "list")
    assert result.exit_code == 0, result.output
    header, desk, out = result.stdout.splitlines()
    assert header.split() == COLUMNS
    assert desk.split()[:3] == ["desk", "webhook", "https://hooks.example.com/in"]
    assert "topic:Energy / Oil, ticker:XOM" in desk and "immediate" in desk
    assert out.split()[:4] == ["stdout", "log", "stdout", "market"] and "digest 15 min" in out

    result = invoke(db, "test", "stdout")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["test"] is True and record["idempotency_key"].startswith("test|stdout|")
    assert "test notification to log stdout: delivered" in result.stdout

    # Without a terminal to ask on, removing needs --yes (one line, exit 2, nothing deleted).
    result = invoke(db, "remove", "stdout")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "finsent: error: Remove subscription stdout and delete its 0 deliveries (pending and history): "
        "not confirmed (no terminal to ask on); pass --yes to confirm\n"
    )
    assert "stdout" in invoke(db, "list").stdout
    monkeypatch.setattr("services.cli.common.stdin_is_interactive", lambda: True)
    result = invoke(db, "remove", "stdout", input="n\n")
    assert result.exit_code == 1 and "not confirmed; nothing changed" in result.stderr
    assert "Remove subscription stdout and delete its 0 deliveries" in result.stdout
    assert "stdout" in invoke(db, "list").stdout
    result = invoke(db, "remove", "stdout", input="y\n")
    assert result.exit_code == 0 and "removed subscription stdout and 0 deliveries" in result.stdout
    result = invoke(db, "remove", "stdout", "--yes")
    assert result.exit_code == 2 and "no subscription named 'stdout'" in result.stderr
    result = invoke(db, "test", "nope")
    assert result.exit_code == 2 and "no subscription named 'nope'" in result.stderr


def test_test_reports_a_failing_channel(db: Path) -> None:
    result = invoke(db, "add", "--name", "mail", "--channel", "email", "--target", "desk@example.com")
    assert result.exit_code == 0 and "FINSENT_SMTP_HOST is not set" in result.stderr
    result = invoke(db, "test", "mail")
    assert result.exit_code == 1
    assert "failed (would be retried)" in result.stderr and "set FINSENT_SMTP_HOST" in result.stderr


def test_the_operator_can_allow_an_internal_receiver(db: Path) -> None:
    add = ["add", "--name", "x", *HOOK[:2], "--target", "http://10.1.2.3/hook", *HOOK[4:]]
    assert invoke(db, *add).exit_code == 2
    result = invoke(db, *add, FINSENT_OUTBOUND_ALLOW="10.1.0.0/16")
    assert result.exit_code == 0, result.output
