"""`finsent tokens revoke`: an unknown name is one line before any question, and without a
terminal to ask on revoking needs --yes (exit 2), as every destructive command does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.ingest.token_file import load_tokens
from services.settings import get_settings

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


@pytest.fixture
def tokens_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory
    return tmp_path / "tokens.json"


def invoke(tokens_file: Path, *args: str, input: str | None = None) -> Any:
    get_settings.cache_clear()
    try:
        env = {**CLEAN_ENV, "FINSENT_HOME": str(tokens_file.parent / "home")}
        env["FINSENT_INGEST_TOKENS_FILE"] = str(tokens_file)
        return CliRunner().invoke(app, ["tokens", *args], input=input, env=env)
    finally:
        get_settings.cache_clear()


def one_line_error(result: Any, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stderr == f"finsent: error: {message}\n"


def revoked(tokens_file: Path) -> dict[str, bool]:
    return {r.name: r.revoked is not None for r in load_tokens(tokens_file)}


def test_revoking_an_unknown_token_says_so_without_asking(tokens_file: Path) -> None:
    result = invoke(tokens_file, "revoke", "nosuch")
    one_line_error(result, 2, f"no token named 'nosuch' in {tokens_file} (tokens: none)")
    assert result.stdout == ""  # no question asked
    assert invoke(tokens_file, "add", "wire").exit_code == 0
    one_line_error(
        invoke(tokens_file, "revoke", "nosuch", "--yes"),
        2,
        f"no token named 'nosuch' in {tokens_file} (tokens: wire)",
    )


def test_revoking_without_a_terminal_needs_yes(tokens_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke(tokens_file, "add", "wire").exit_code == 0
    result = invoke(tokens_file, "revoke", "wire")  # CliRunner's stdin is no terminal
    one_line_error(
        result,
        2,
        "Revoke token 'wire' (clients using it get 401): not confirmed (no terminal to ask on); "
        "pass --yes to confirm",
    )
    assert result.stdout == "" and revoked(tokens_file) == {"wire": False}

    monkeypatch.setattr("services.cli.common.stdin_is_interactive", lambda: True)
    result = invoke(tokens_file, "revoke", "wire", input="n\n")
    one_line_error(result, 1, "not confirmed; nothing changed (pass --yes to skip the question)")
    assert revoked(tokens_file) == {"wire": False}
    result = invoke(tokens_file, "revoke", "wire", input="y\n")
    assert result.exit_code == 0, result.output
    assert "revoked 'wire'" in result.stdout and revoked(tokens_file) == {"wire": True}

    result = invoke(tokens_file, "revoke", "wire")  # nothing left to confirm
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("'wire' was revoked already, at ")


def test_revoke_yes_needs_no_terminal(tokens_file: Path) -> None:
    assert invoke(tokens_file, "add", "wire").exit_code == 0
    result = invoke(tokens_file, "revoke", "wire", "-y")
    assert result.exit_code == 0, result.output
    assert revoked(tokens_file) == {"wire": True}
