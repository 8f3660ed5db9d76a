"""Ingest bearer tokens: hashing and matching, the tokens file, its live reload, and the
`finsent tokens add|list|revoke` commands."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.ingest.token_file import TokenWatcher, add_token, load_tokens, revoke_token
from services.ingest.tokens import (
    TokenConfigError,
    TokenRecord,
    bearer_token,
    hash_token,
    match_token,
    new_token,
    parse_hash_list,
)
from services.settings import get_settings

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


def invoke(args: list[str], home: Path, input: str | None = None, **env: str) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, input=input, env={**CLEAN_ENV, "FINSENT_HOME": str(home), **env})
    finally:
        get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory


def test_tokens_are_256_bit_random_and_distinct() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith("fst_") and len(t) == 4 + 43 for t in tokens)


def test_match_only_active_records_with_the_same_hash() -> None:
    good, revoked, other = new_token(), new_token(), new_token()
    records = [
        TokenRecord("good", hash_token(good)),
        TokenRecord("gone", hash_token(revoked), revoked=datetime(2026, 1, 1, tzinfo=UTC)),
    ]
    assert match_token(good, records) == "good"
    assert match_token(revoked, records) is None
    assert match_token(other, records) is None
    assert match_token(None, records) is None
    assert match_token(good, []) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("Bearer " + "x" * 300, None),
        (None, None),
        ("", None),
    ],
)
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_hash_list_setting() -> None:
    digest = hash_token("t")
    assert parse_hash_list(f" a:{digest} , b:{digest.upper()},") == [
        TokenRecord("a", digest),
        TokenRecord("b", digest),
    ]
    assert parse_hash_list("") == []
    with pytest.raises(TokenConfigError, match=r"entry 1 .* is not NAME:SHA256"):
        parse_hash_list("a-token-not-a-hash")
    with pytest.raises(TokenConfigError, match="names 'a' twice"):
        parse_hash_list(f"a:{digest},a:{digest}")


def test_file_add_revoke_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.json"
    token = add_token(path, "wire")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and hash_token(token) in text
    with pytest.raises(TokenConfigError, match="exists"):
        add_token(path, "wire")
    with pytest.raises(TokenConfigError, match="not valid"):
        add_token(path, "bad name")
    (record,) = load_tokens(path)
    assert record.name == "wire" and record.active and record.created is not None
    revoked = revoke_token(path, "wire")
    assert revoked.revoked is not None
    assert revoke_token(path, "wire").revoked == revoked.revoked  # idempotent
    with pytest.raises(TokenConfigError, match="no token named 'nope'"):
        revoke_token(path, "nope")


def test_watcher_follows_revocation_within_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = add_token(path, "wire")
    now = [0.0]
    watcher = TokenWatcher(path, check_interval=1.0, clock=lambda: now[0])
    assert match_token(token, watcher.records()) == "wire"
    revoke_token(path, "wire")
    now[0] = 0.5  # within the interval: not looked at yet
    assert match_token(token, watcher.records()) == "wire"
    now[0] = 1.5
    assert match_token(token, watcher.records()) is None


def test_watcher_fails_closed_on_a_broken_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.json"
    token = add_token(path, "wire")
    env_token = new_token()
    now = [0.0]
    watcher = TokenWatcher(path, [TokenRecord("env", hash_token(env_token))], clock=lambda: now[0])
    path.write_text("{not json")
    now[0] = 2.0
    records = watcher.records()
    assert match_token(token, records) is None
    assert match_token(env_token, records) == "env"  # the setting's tokens keep working
    assert "ingest tokens file unusable" in caplog.text


def test_broken_file_at_start_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"name": "x", "sha256": "abc"}]}))
    with pytest.raises(TokenConfigError, match="64 lowercase hex"):
        TokenWatcher(path)


def test_cli_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    added = invoke(["tokens", "add", "wire-feed"], tmp_path)
    assert added.exit_code == 0, added.output
    token = added.stdout.splitlines()[0].removeprefix("token: ")
    assert token.startswith("fst_")
    stored = tmp_path / "ingest-tokens.json"
    assert match_token(token, load_tokens(stored)) == "wire-feed"

    listed = invoke(["tokens", "list", "--json"], tmp_path)
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["name"] == "wire-feed" and row["revoked"] is None and row["created"]
    assert set(row) == {"name", "created", "revoked", "source"}
    table = invoke(["tokens", "list"], tmp_path)
    for output in (listed.stdout, table.stdout):
        assert token not in output and hash_token(token) not in output

    # Asking needs a terminal (without one: --yes, tests/unit/test_cli_tokens.py).
    monkeypatch.setattr("services.cli.common.stdin_is_interactive", lambda: True)
    refused = invoke(["tokens", "revoke", "wire-feed"], tmp_path, input="n\n")
    assert refused.exit_code == 1 and "not confirmed" in refused.stderr
    assert load_tokens(stored)[0].active
    confirmed = invoke(["tokens", "revoke", "wire-feed"], tmp_path, input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert not load_tokens(stored)[0].active
    again = invoke(["tokens", "revoke", "wire-feed", "--yes"], tmp_path)
    assert again.exit_code == 0 and "revoked already" in again.stdout
    listed = invoke(["tokens", "list", "--json"], tmp_path)
    assert json.loads(listed.stdout)[0]["revoked"]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    for args in (["tokens", "revoke", "nobody", "--yes"], ["tokens", "add", "no spaces"]):
        result = invoke(args, tmp_path)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("finsent: error: "), result.stderr


def test_hash_only_writes_nothing_and_its_entry_is_accepted(tmp_path: Path) -> None:
    result = invoke(["tokens", "add", "ci", "--hash-only"], tmp_path)
    assert result.exit_code == 0, result.output
    token = result.stdout.splitlines()[0].removeprefix("token: ")
    entry = result.stdout.splitlines()[1].split(": ", 1)[1]
    assert not (tmp_path / "ingest-tokens.json").exists()
    assert match_token(token, parse_hash_list(entry)) == "ci"
    listed = invoke(["tokens", "list", "--json"], tmp_path, FINSENT_INGEST_TOKEN_HASHES=entry)
    assert json.loads(listed.stdout) == [{"name": "ci", "created": None, "revoked": None, "source": "env"}]
    revoke = invoke(["tokens", "revoke", "ci", "--yes"], tmp_path, FINSENT_INGEST_TOKEN_HASHES=entry)
    assert revoke.exit_code == 2 and "FINSENT_INGEST_TOKEN_HASHES" in revoke.stderr


def test_serve_http_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    result = invoke(["serve-http"], tmp_path, FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert result.exit_code == 2
    assert "no active ingest token" in result.stderr and "finsent tokens add NAME" in result.stderr


def test_malformed_hash_setting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli.app import main

    monkeypatch.setenv("FINSENT_INGEST_TOKEN_HASHES", "oops")
    monkeypatch.setattr("sys.argv", ["finsent", "tokens", "list"])
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        get_settings.cache_clear()
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "is not NAME:SHA256" in lines[0], lines
