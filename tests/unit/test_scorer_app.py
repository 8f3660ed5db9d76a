"""The faust shell of the scorer, without a broker: its pure helpers, the database fallback
that dead-letters only what the database refuses alone, and `finsent worker`'s one-line
configuration errors (the whole worker runs in tests/integration/test_scorer_worker.py)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc
from typer.testing import CliRunner

from services.cli import app
from services.retry import RetryPolicy
from services.scorer import RawRecord
from services.scorer import app as scorer_app
from services.scorer.app import broker_urls, record_from_event, scored_message, store_or_dead_letter
from services.settings import get_settings
from services.storage.repository import ScoredItem

T0 = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
NO_WAIT = RetryPolicy(initial=0.01, max_delay=0.05, jitter=0.0, max_elapsed=0.0)


def scored(event_id: str, offset: int) -> ScoredItem:
    return ScoredItem(
        event_id=event_id,
        headline=f"headline {event_id}",
        published_at=T0,
        received_at=T0,
        model_version="v1",
        topic="Earnings",
        topic_score=0.9,
        sentiment="bullish",
        p_bearish=0.1,
        p_neutral=0.2,
        p_bullish=0.7,
        sentiment_score=0.6,
        scored_at=T0,
        tickers=("AAPL",),
        kafka_partition=0,
        kafka_offset=offset,
    )


def test_broker_urls() -> None:
    assert broker_urls("a:9092, b:9093,") == ["kafka://a:9092", "kafka://b:9093"]


def test_scored_message_fields() -> None:
    body = json.loads(scored_message(scored("e1", 0)))
    assert body == {
        "event_id": "e1",
        "published_at": "2025-03-04T12:00:00+00:00",
        "topic": "Earnings",
        "sentiment": "bullish",
        "probs": {"bearish": 0.1, "neutral": 0.2, "bullish": 0.7},
        "sentiment_score": 0.6,
        "tickers": ["AAPL"],
        "model_version": "v1",
    }


def test_record_from_event_keeps_position_and_raw_bytes() -> None:
    message = SimpleNamespace(
        topic="news.raw",
        partition=2,
        offset=41,
        key=b"k",
        value=b"\xff not utf-8",
        timestamp=1_700_000_000.5,
        headers=[("h", b"v")],
    )
    record = record_from_event(SimpleNamespace(message=message))
    assert record == RawRecord("news.raw", 2, 41, b"k", b"\xff not utf-8", 1_700_000_000_500, (("h", b"v"),))


def test_a_refused_batch_is_stored_item_by_item(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_store(
        _factory: Any, items: Sequence[ScoredItem], *, retry: RetryPolicy, on_retry: Any, stories: Any = None
    ) -> None:
        ids = [item.event_id for item in items]
        calls.append(ids)
        if "poison" in ids:
            raise sa_exc.DataError("INSERT …", {}, ValueError("NUL character in text"))

    monkeypatch.setattr(scorer_app, "store_batch", fake_store)
    items = [scored("a", 0), scored("poison", 1), scored("b", 2)]
    records = {item.event_id: RawRecord("news.raw", 0, item.kafka_offset or 0, None, b"{}") for item in items}
    stored, dead = store_or_dead_letter(lambda: None, items, records, retry=NO_WAIT)  # type: ignore[arg-type,return-value]
    assert [item.event_id for item in stored] == ["a", "b"]
    assert [(d.record.offset, d.error_class, d.error_type) for d in dead] == [
        (1, "DataError", "storage_error")
    ]
    assert "NUL character" in dead[0].reason
    assert calls == [["a", "poison", "b"], ["a"], ["poison"], ["b"]]


def test_an_outage_is_not_dead_lettered(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(
        _factory: Any, _items: Sequence[ScoredItem], *, retry: RetryPolicy, on_retry: Any, stories: Any = None
    ) -> None:
        raise sa_exc.OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(scorer_app, "store_batch", down)
    item = scored("a", 0)
    with pytest.raises(sa_exc.OperationalError):
        store_or_dead_letter(lambda: None, [item], {"a": RawRecord("t", 0, 0, None, b"")}, retry=NO_WAIT)  # type: ignore[arg-type,return-value]


# --------------------------------------------------------------------------- CLI

# No FINSENT_ setting from outside; the metrics port is any free one, so a test never depends
# on the default 9464 being free (another test's service may hold it at the same moment).
CLEAN_ENV: dict[str, str | None] = {
    **{k: None for k in os.environ if k.startswith("FINSENT_")},
    "FINSENT_SCORER_METRICS_PORT": "0",
}


def one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["worker"], env={**CLEAN_ENV, **env})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("finsent: error: "), result.stderr
    return lines[0].removeprefix("finsent: error: ")


def test_worker_needs_a_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = one_line_error(tmp_path, monkeypatch)
    assert message == "no Kafka broker configured: set FINSENT_KAFKA_BOOTSTRAP=host:port"


def test_worker_needs_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    message = one_line_error(
        tmp_path, monkeypatch, FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1", FINSENT_HOME=str(home)
    )
    assert message == (
        "no model: register one with `finsent models register DIR --champion`, set FINSENT_MODEL to a "
        f"model directory, or run `finsent run` once to bootstrap one into {home}/models/bootstrap"
    )


def test_worker_model_dir_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "absent"
    message = one_line_error(
        tmp_path, monkeypatch, FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1", FINSENT_MODEL=str(missing)
    )
    assert message == f"FINSENT_MODEL={missing}: no such directory"


def test_worker_metrics_port_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        message = one_line_error(
            tmp_path,
            monkeypatch,
            FINSENT_KAFKA_BOOTSTRAP="127.0.0.1:1",
            FINSENT_MODEL=str(tmp_path),
            FINSENT_SCORER_METRICS_PORT=str(port),
        )
    assert message.startswith(f"cannot serve metrics on 127.0.0.1:{port}: "), message
    assert "set FINSENT_SCORER_METRICS_PORT to a free port" in message
