"""`finsent init | ingest | serve-http | poll-feed`: argument and configuration errors are one line;
what poll-feed prints after a poll.

No broker needed: every command case fails before anything is sent (the happy paths run
against a real broker in tests/integration/test_ingest_kafka.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.broker.embedded import free_port
from services.cli import app
from services.settings import get_settings

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


def invoke(args: list[str], **env: str) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, env={**CLEAN_ENV, **env})
    finally:
        get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory


@pytest.fixture
def news_file(tmp_path: Path) -> Path:
    path = tmp_path / "news.jsonl"
    path.write_text('{"headline": "Fed holds rates"}\n', encoding="utf-8")
    return path


def one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finsent: error: "), result.stderr
    return lines[0].removeprefix("finsent: error: ")


def test_rate_and_replay_speed_exclude_each_other(news_file: Path) -> None:
    result = invoke(["ingest", str(news_file), "--rate", "5", "--replay-speed", "2"])
    assert one_line_error(result) == "use either --rate or --replay-speed, not both"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--rate", "--rate must be positive, got 0"),
        ("--replay-speed", "--replay-speed must be positive, got 0"),
    ],
)
def test_pacing_must_be_positive(news_file: Path, option: str, message: str) -> None:
    assert one_line_error(invoke(["ingest", str(news_file), option, "0"])) == message


def test_missing_file(tmp_path: Path) -> None:
    assert one_line_error(invoke(["ingest", str(tmp_path / "absent.jsonl")])).endswith(
        "absent.jsonl: no such file"
    )


def test_unsupported_file_type(tmp_path: Path) -> None:
    path = tmp_path / "news.xlsx"
    path.write_bytes(b"x")
    assert "unsupported file type '.xlsx'" in one_line_error(invoke(["ingest", str(path)]))


@pytest.mark.parametrize(
    "command", [["init"], ["ingest", "news.jsonl"], ["serve-http"], ["poll-feed", "http://x/"]]
)
def test_no_broker_configured(news_file: Path, command: list[str]) -> None:
    hashes = f"t:{'0' * 64}"  # serve-http checks its tokens before the broker
    message = one_line_error(invoke(command, FINSENT_KAFKA_BOOTSTRAP="", FINSENT_INGEST_TOKEN_HASHES=hashes))
    assert message == "no Kafka broker configured: set FINSENT_KAFKA_BOOTSTRAP=host:port"


def test_unreachable_broker(news_file: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = invoke(
        ["ingest", str(news_file)], FINSENT_KAFKA_BOOTSTRAP=bootstrap, FINSENT_KAFKA_TIMEOUT_SECONDS="1"
    )
    assert one_line_error(result).startswith(f"Kafka broker at {bootstrap} is not reachable")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "not a url"])
def test_poll_feed_needs_an_http_url(url: str) -> None:
    result = invoke(["poll-feed", url], FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert one_line_error(result).startswith("feed URL must be http:// or https://")


def test_poll_feed_interval_must_be_positive() -> None:
    result = invoke(["poll-feed", "http://x/", "--interval", "0"], FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert one_line_error(result) == "--interval must be positive, got 0"


def test_the_poll_line_names_entries_deferred_to_the_next_poll() -> None:
    """Entries over the per-poll limit are sent by the next poll; a line without them read as
    if they were lost. A poll without any keeps the short line."""
    from services.cli.ingest import poll_summary
    from services.ingest.feed_source import PollResult

    assert poll_summary(
        "https://x/feed", PollResult(fetched=12_500, sent=9_998, skipped=2, deferred=2_500)
    ) == ("polled https://x/feed: 12500 entries, 9998 new sent, 2 invalid, 2500 deferred to the next poll")
    assert poll_summary("https://x/feed", PollResult(fetched=3, sent=1, skipped=0)) == (
        "polled https://x/feed: 3 entries, 1 new sent, 0 invalid"
    )
