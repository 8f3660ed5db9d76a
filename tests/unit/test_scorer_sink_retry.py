"""The sink's retry loop (fake sleep and clock, SQLite file); the schedule it follows is
services.retry's (tests/unit/test_retry.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from services.retry import RetryPolicy
from services.scorer import store_batch
from services.storage import Base, ScoredItem, UpsertCounts, count_items, count_predictions, make_engine

T0 = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def _db_error(cls: type[DBAPIError], *, invalidated: bool = False) -> DBAPIError:
    return cls("INSERT …", {}, Exception("server closed the connection"), connection_invalidated=invalidated)


# --------------------------------------------------------------------------- retry loop


def make_items(n: int) -> list[ScoredItem]:
    return [
        ScoredItem(
            event_id=f"e{i}",
            headline=f"headline {i}",
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
        )
        for i in range(n)
    ]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/sink.db")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


class FlakyFactory:
    """Sessions on a real SQLite database whose first `failures` attempts fail with `error`
    at `where` ("open": the first statement; "commit": after all the inserts ran)."""

    def __init__(self, engine: Engine, failures: int, *, where: str = "open", error: Exception | None = None):
        self.real = sessionmaker(engine)
        self.failures = failures
        self.where = where
        self.error = error or _db_error(OperationalError)
        self.calls = 0

    def __call__(self) -> Session:
        self.calls += 1
        session = self.real()
        if self.calls <= self.failures:
            error = self.error

            def fail(*_args: object, **_kwargs: object) -> None:
                raise error

            if self.where == "open":
                session.scalars = fail  # type: ignore[method-assign]
            else:
                session.commit = fail  # type: ignore[method-assign]
        return session


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def counts(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        return count_items(session), count_predictions(session)


POLICY = RetryPolicy(initial=0.5, max_delay=4.0, jitter=0.0)


@pytest.mark.parametrize("where", ["open", "commit"])
def test_retries_until_the_database_answers(
    engine: Engine, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    factory = FlakyFactory(engine, failures=5, where=where)
    fake = FakeTime()
    retries: list[tuple[int, float]] = []

    with caplog.at_level(logging.WARNING, logger="services.scorer.sink"):
        result = store_batch(
            factory,
            make_items(3),
            retry=POLICY,
            sleep=fake.sleep,
            clock=fake.clock,
            on_retry=lambda attempt, delay, _exc: retries.append((attempt, delay)),
        )

    assert result == UpsertCounts(news_items=3, news_tickers=3, predictions=3)  # the committed attempt's
    assert factory.calls == 6
    assert fake.sleeps == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert retries == [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0)]
    assert counts(engine) == (3, 3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 5
    assert (
        "attempt 1" in warnings[0].getMessage() and "server closed the connection" in warnings[0].getMessage()
    )


def test_storing_again_counts_nothing_new(engine: Engine) -> None:
    items = make_items(4)
    fake = FakeTime()
    assert store_batch(sessionmaker(engine), items, retry=POLICY, sleep=fake.sleep) == UpsertCounts(4, 4, 4)
    assert store_batch(sessionmaker(engine), items, retry=POLICY, sleep=fake.sleep) == UpsertCounts(0, 0, 0)
    assert fake.sleeps == [] and counts(engine) == (4, 4)


def test_gives_up_after_max_elapsed(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    factory = FlakyFactory(engine, failures=1_000)
    fake = FakeTime()
    policy = RetryPolicy(initial=1.0, max_delay=4.0, jitter=0.0, max_elapsed=10.0)

    with pytest.raises(OperationalError), caplog.at_level(logging.ERROR, logger="services.scorer.sink"):
        store_batch(factory, make_items(2), retry=policy, sleep=fake.sleep, clock=fake.clock)

    assert fake.sleeps == [1.0, 2.0, 4.0]  # 7 s slept; another 4 s would pass 10 s
    assert factory.calls == 4
    assert counts(engine) == (0, 0)
    assert any("failed after 4 attempts" in r.getMessage() for r in caplog.records)


def test_statement_errors_are_not_retried(engine: Engine) -> None:
    factory = FlakyFactory(engine, failures=1, error=_db_error(IntegrityError))
    fake = FakeTime()
    with pytest.raises(IntegrityError):
        store_batch(factory, make_items(2), retry=POLICY, sleep=fake.sleep, clock=fake.clock)
    assert factory.calls == 1 and fake.sleeps == []
    assert counts(engine) == (0, 0)


def test_an_empty_batch_touches_nothing() -> None:
    def no_session() -> Session:
        raise AssertionError("no session needed")

    assert store_batch(no_session, [], retry=POLICY) == UpsertCounts(0, 0, 0)
