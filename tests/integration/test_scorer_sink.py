"""The scorer's per-batch core against real databases: score_batch with the tiny model,
then store_batch on PostgreSQL and SQLite. Storing a batch twice (a replay after a crash
between DB commit and offset commit) inserts nothing the second time."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from bert_core import Predictor
from services.retry import RetryPolicy
from services.schemas import DEFAULT_WATCHLIST
from services.scorer import RawRecord, score_batch, store_batch
from services.storage import (
    NewsItemRow,
    NewsTickerRow,
    PredictionRow,
    UpsertCounts,
    make_engine,
    session_factory,
)

pytestmark = pytest.mark.integration

RECEIVED = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
NO_WAIT = RetryPolicy(initial=0.01, max_delay=0.05, jitter=0.0)
HEADLINES = [
    "$AAPL shares surge after earnings beats estimates",
    "oil prices plunge as opec output rises",
    "fed holds rates steady as inflation cools",
    "$MSFT and $NVDA stocks rally on strong revenue",
    "bank lender shares drops on credit loss",
]


@pytest.fixture(scope="module")
def predictor(saved_model_dir: Path) -> Predictor:
    return Predictor.load(saved_model_dir)


def records(n: int) -> list[RawRecord]:
    out = []
    for i in range(n):
        value = json.dumps({"id": f"item-{i}", "headline": HEADLINES[i % len(HEADLINES)], "source": "test"})
        out.append(RawRecord("news.raw", i % 3, i, key=f"item-{i}".encode(), value=value.encode()))
    out.append(RawRecord("news.raw", 0, n, key=None, value=b"\xff not json"))  # a dead letter
    out.append(RawRecord("news.raw", 1, n + 1, key=b"item-0", value=out[0].value))  # a duplicate
    return out


def table_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            row.__tablename__: session.scalar(select(func.count()).select_from(row)) or 0
            for row in (NewsItemRow, NewsTickerRow, PredictionRow)
        }


def test_a_scored_batch_stored_twice_is_stored_once(engine: Engine, predictor: Predictor) -> None:
    result = score_batch(records(40), predictor=predictor, received_at=RECEIVED, watchlist=DEFAULT_WATCHLIST)
    assert len(result.scored) == 40 and len(result.dead) == 1 and result.duplicates == 1
    n_tickers = sum(len(s.tickers) for s in result.scored)
    assert n_tickers == 8 * 1 + 8 * 2  # $AAPL on one headline, $MSFT + $NVDA on another

    first = store_batch(session_factory(engine), result.scored, retry=NO_WAIT)
    second = store_batch(session_factory(engine), result.scored, retry=NO_WAIT)

    assert first == UpsertCounts(news_items=40, news_tickers=n_tickers, predictions=40)
    assert second == UpsertCounts(0, 0, 0)
    assert table_counts(engine) == {"news_items": 40, "news_tickers": n_tickers, "predictions": 40}
    with Session(engine) as session:
        stored = session.scalars(select(PredictionRow).order_by(PredictionRow.event_id)).all()
        assert {p.model_version for p in stored} == {predictor.version}
        assert len({p.event_id for p in stored}) == 40
        item = session.get(NewsItemRow, "item-7")
        assert item is not None and (item.kafka_partition, item.kafka_offset) == (1, 7)


def test_an_overlapping_replay_adds_only_the_new_items(engine: Engine, predictor: Predictor) -> None:
    batch = score_batch(records(30), predictor=predictor, received_at=RECEIVED, watchlist=DEFAULT_WATCHLIST)
    head, overlap = batch.scored[:20], batch.scored[10:]
    assert store_batch(session_factory(engine), head, retry=NO_WAIT).predictions == 20
    assert store_batch(session_factory(engine), overlap, retry=NO_WAIT).predictions == 10
    assert table_counts(engine)["news_items"] == 30 and table_counts(engine)["predictions"] == 30


def _unreachable(engine: Engine) -> Engine:
    """An engine to the same kind of database that cannot connect: a PostgreSQL port nobody
    listens on, or a SQLite file in a directory that does not exist (create_engine, not
    make_engine, so nothing creates it)."""
    if engine.dialect.name == "postgresql":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return make_engine(engine.url.set(port=port), poolclass=NullPool)
    missing = Path(engine.url.database or ".").parent / "no-such-dir" / "finsent.db"
    return create_engine(f"sqlite:///{missing}", poolclass=NullPool)


def test_a_real_connection_failure_is_retried_until_the_database_is_back(
    engine: Engine, predictor: Predictor
) -> None:
    down = _unreachable(engine)
    up = session_factory(engine)
    attempts = 0

    def factory() -> Session:
        nonlocal attempts
        attempts += 1
        return Session(down) if attempts <= 3 else up()

    result = score_batch(records(5), predictor=predictor, received_at=RECEIVED, watchlist=DEFAULT_WATCHLIST)
    sleeps: list[float] = []
    try:
        counts = store_batch(factory, result.scored, retry=NO_WAIT, sleep=sleeps.append)
        assert attempts == 4 and sleeps == [0.01, 0.02, 0.04]
        assert counts.predictions == 5 and table_counts(engine)["predictions"] == 5

        bounded = RetryPolicy(initial=0.01, max_delay=0.01, jitter=0.0, max_elapsed=0.0)
        with pytest.raises(OperationalError):  # a bounded policy gives up with the real error
            store_batch(lambda: Session(down), result.scored, retry=bounded, sleep=sleeps.append)
    finally:
        down.dispose()
