"""Storage on real PostgreSQL and on SQLite: migrations, idempotent batch upserts, queries.

One migrated database per backend for the module (PostgreSQL: a fresh database, dropped
at the end); every test starts from empty tables.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from services.schemas import NewsItem
from services.storage import (
    Base,
    NewsItemRow,
    NewsTickerRow,
    PredictionRow,
    ScheduledJobRow,
    ScoredItem,
    UpsertCounts,
    count_items,
    count_predictions,
    current_revision,
    head_revision,
    make_engine,
    predictions_in_range,
    session_factory,
    upgrade_database,
    upsert_scored_batch,
)
from services.storage.migrate import alembic_config, include_in_autogenerate

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
TOPICS = ("Earnings", "Energy | Oil", "Fed | Central Banks")
SENTIMENTS = ("bearish", "neutral", "bullish")


def make_news(i: int, **overrides: Any) -> NewsItem:
    """Story i, published i minutes after T0; tickers: even -> AAPL, multiples of 3 -> MSFT."""
    tickers = tuple(t for t, on in (("AAPL", i % 2 == 0), ("MSFT", i % 3 == 0)) if on)
    fields: dict[str, Any] = {
        "event_id": f"e{i:04d}",
        "headline": f"headline {i}",
        "published_at": T0 + timedelta(minutes=i),
        "received_at": T0 + timedelta(minutes=i, seconds=5),
        "source": "test",
        "tickers": tickers,
        "extra": {"i": i, "nested": {"ok": True}},
    }
    return NewsItem(**{**fields, **overrides})


def make_scored(news: NewsItem, i: int, model_version: str = "v1") -> ScoredItem:
    return ScoredItem.from_news(
        news,
        model_version=model_version,
        topic=TOPICS[i % 3],
        topic_score=0.9,
        sentiment=SENTIMENTS[i % 3],
        p_bearish=0.7 if i % 3 == 0 else 0.1,
        p_neutral=0.2,
        p_bullish=0.1 if i % 3 == 0 else 0.7,
        sentiment_score=-0.6 if i % 3 == 0 else 0.6,
        scored_at=T0 + timedelta(hours=1),
        kafka_partition=i % 4,
        kafka_offset=i,
    )


def batch(n: int, model_version: str = "v1") -> list[ScoredItem]:
    return [make_scored(make_news(i), i, model_version) for i in range(n)]


def store(engine: Engine, items: list[ScoredItem]) -> UpsertCounts:
    with session_factory(engine).begin() as session:
        return upsert_scored_batch(session, items=items)


def counts(engine: Engine) -> tuple[int, int, int]:
    with Session(engine) as session:
        n_tickers = len(session.scalars(select(NewsTickerRow.ticker)).all())
        return count_items(session), n_tickers, count_predictions(session)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table.name: sorted(tuple(row) for row in conn.execute(select(table)))
            for table in Base.metadata.sorted_tables
        }


def test_migrated_schema_matches_models(engine: Engine, database_url: str) -> None:
    assert current_revision(database_url) == head_revision() == "0010"
    assert upgrade_database(database_url) == "0010"  # running it again is a no-op
    with engine.connect() as conn:
        command.check(alembic_config(conn))  # `alembic check`: raises if autogenerate finds changes
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_in_autogenerate}
        )
        assert compare_metadata(context, Base.metadata) == []
        # ...and the comparison does see a difference when there is one.
        changed = MetaData()
        for table in Base.metadata.sorted_tables:
            table.to_metadata(changed)
        changed.tables["news_items"].append_column(Column("added", Integer))
        assert [diff[0] for diff in compare_metadata(context, changed)] == ["add_column"]
        inspector = inspect(conn)
        indexes = {
            table: {ix["name"] for ix in inspector.get_indexes(table) if not ix.get("duplicates_constraint")}
            for table in ("news_items", "news_tickers", "predictions")
        }
        unique = [uq["column_names"] for uq in inspector.get_unique_constraints("predictions")]
    postgres = engine.dialect.name == "postgresql"
    fts = {"ix_news_items_headline_fts"} if postgres else set()
    influence = {"ix_predictions_influence"} if postgres else set()
    assert indexes == {
        "news_items": {"ix_news_items_published_at", *fts},
        "news_tickers": {"ix_news_tickers_ticker_published_at"},
        "predictions": {
            "ix_predictions_published_at",
            "ix_predictions_topic_published_at",
            "ix_predictions_sentiment_published_at",
            *influence,
        },
    }
    assert unique == [["event_id", "model_version"]]


def test_storing_a_batch_twice_changes_nothing(engine: Engine) -> None:
    items = batch(30)
    n_tickers = sum(len(item.tickers) for item in items)
    assert store(engine, items) == UpsertCounts(news_items=30, news_tickers=n_tickers, predictions=30)
    before = snapshot(engine)
    assert store(engine, items) == UpsertCounts(0, 0, 0)
    assert store(engine, list(reversed(items[:10]))) == UpsertCounts(0, 0, 0)
    assert counts(engine) == (30, n_tickers, 30)
    assert snapshot(engine) == before  # a replay changes no row


def test_duplicates_within_a_batch_count_once(engine: Engine) -> None:
    items = batch(5)
    n_tickers = sum(len(item.tickers) for item in items)
    assert store(engine, [*items, *items, items[0]]) == UpsertCounts(5, n_tickers, 5)
    assert counts(engine) == (5, n_tickers, 5)


def test_overlapping_batch_stores_only_the_new_items(engine: Engine) -> None:
    store(engine, batch(10))
    n_tickers = sum(len(item.tickers) for item in batch(15)[10:])
    assert store(engine, batch(15)) == UpsertCounts(news_items=5, news_tickers=n_tickers, predictions=5)
    assert counts(engine)[0::2] == (15, 15)


def test_second_model_version_adds_predictions_not_items(engine: Engine) -> None:
    store(engine, batch(20))
    assert store(engine, batch(20, model_version="v2")) == UpsertCounts(0, 0, 20)
    with Session(engine) as session:
        assert count_items(session) == 20
        assert count_predictions(session) == 40
        assert count_predictions(session, model_version="v2") == 20


def test_copies_of_published_at_follow_the_stored_story(engine: Engine) -> None:
    first = make_news(3)  # tickers: MSFT
    store(engine, [make_scored(first, 3)])
    # The same story seen again later with another time (e.g. no published_at: receive time).
    again = make_news(3, published_at=T0 + timedelta(days=3), tickers=("TSLA",))
    assert store(engine, [make_scored(again, 3, "v2")]) == UpsertCounts(0, 0, 1)
    with Session(engine) as session:
        times = set(session.scalars(select(PredictionRow.published_at)))
        assert times == {first.published_at}
        assert session.scalars(select(NewsTickerRow.ticker)).all() == ["MSFT"]  # first sighting's tickers


def test_rows_round_trip(engine: Engine) -> None:
    item = make_scored(make_news(6, body="body text", url="https://example.com/6"), 6)
    store(engine, [item])
    with Session(engine) as session:
        row = session.get_one(NewsItemRow, "e0006")
        assert (row.headline, row.body, row.url, row.source) == (
            "headline 6",
            "body text",
            "https://example.com/6",
            "test",
        )
        assert row.published_at == item.published_at and row.published_at.tzinfo is UTC
        assert row.received_at == item.received_at
        assert row.tickers == ["AAPL", "MSFT"]
        assert row.extra == {"i": 6, "nested": {"ok": True}}
        assert (row.kafka_partition, row.kafka_offset) == (2, 6)
        tickers = session.execute(select(NewsTickerRow.ticker, NewsTickerRow.published_at)).all()
        assert sorted(tickers) == [("AAPL", item.published_at), ("MSFT", item.published_at)]
        prediction = session.scalars(select(PredictionRow)).one()
        assert (prediction.topic, prediction.sentiment, prediction.model_version) == (
            "Earnings",
            "bearish",
            "v1",
        )
        assert (prediction.p_bearish, prediction.p_neutral, prediction.p_bullish) == (0.7, 0.2, 0.1)
        assert prediction.scored_at == T0 + timedelta(hours=1)


def test_time_range_queries(engine: Engine) -> None:
    store(engine, batch(30))
    store(engine, batch(30, model_version="v2"))
    start, end = T0 + timedelta(minutes=6), T0 + timedelta(minutes=18)  # stories 6..17
    with Session(engine) as session:

        def ids(**filters: Any) -> list[str]:
            rows = predictions_in_range(session, start=start, end=end, model_version="v1", **filters)
            return [row.event_id for row in rows]

        assert ids() == [f"e{i:04d}" for i in range(17, 5, -1)]  # newest first, end excluded
        assert ids(topic="Energy | Oil") == [f"e{i:04d}" for i in (16, 13, 10, 7)]
        assert ids(sentiment="bearish") == [f"e{i:04d}" for i in (15, 12, 9, 6)]
        assert ids(ticker="msft") == [f"e{i:04d}" for i in (15, 12, 9, 6)]
        assert ids(ticker="AAPL", topic="Earnings") == [f"e{i:04d}" for i in (12, 6)]
        assert ids(ticker="TSLA") == []
        assert ids(limit=3) == ["e0017", "e0016", "e0015"]
        both = predictions_in_range(session, start=start, end=end, topic="Earnings")
        assert sorted((row.event_id, row.model_version) for row in both) == [
            (f"e{i:04d}", v) for i in (6, 9, 12, 15) for v in ("v1", "v2")
        ]
        row = predictions_in_range(session, start=start, end=end, ticker="MSFT", limit=1)[0]
        assert (row.headline, row.tickers, row.sentiment_score) == ("headline 15", ["MSFT"], -0.6)
        assert row.published_at == T0 + timedelta(minutes=15) and row.published_at.tzinfo is UTC


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    naive = make_news(1, published_at=datetime(2025, 3, 4, 12, 0))
    with pytest.raises(StatementError, match="timezone-aware"):
        store(engine, [make_scored(naive, 1)])
    assert counts(engine) == (0, 0, 0)


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(IntegrityError), session_factory(engine).begin() as session:
        session.add(NewsTickerRow(event_id="missing", ticker="AAPL", published_at=T0))


def test_a_large_batch_is_sent_as_short_statements(engine: Engine) -> None:
    """PostgreSQL gets the rows as one JSON document (`services.storage.bulk`), not a
    placeholder per value: the statement text stays the same size whatever the batch size."""
    from sqlalchemy import event

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        counted = store(engine, batch(500))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert (counted.news_items, counted.predictions) == (500, 500)
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    if engine.dialect.name == "postgresql":
        assert len(inserts) == 3  # stories, tickers, predictions
        assert all("json_to_recordset(" in s and len(s) < 1500 for s in inserts)
    else:
        assert inserts and all("json_to_recordset(" not in s for s in inserts)
    assert counts(engine)[0] == 500


def test_bulk_insert_refuses_a_column_the_table_does_not_have() -> None:
    from services.storage.bulk import _recordset_insert
    from services.storage.repository import NEWS_ITEMS

    with pytest.raises(KeyError, match="no column"):
        _recordset_insert(NEWS_ITEMS, ("event_id", "headline; DROP TABLE x"), ("event_id",), "event_id")


def test_a_value_too_long_for_its_column_is_refused_not_cut(engine: Engine) -> None:
    """The record's string columns have no length, so PostgreSQL's own column check still refuses a value
    longer than varchar(n) (a cut event_id could merge two stories)."""
    import dataclasses

    from sqlalchemy.exc import DataError

    item = dataclasses.replace(make_scored(make_news(1), 1), model_version="v" * 65)  # column: 64
    if engine.dialect.name == "sqlite":  # no length checks there: stored whole, not cut
        store(engine, [item])
        with Session(engine) as session:
            assert session.scalars(select(PredictionRow.model_version)).one() == "v" * 65
        return
    with pytest.raises(DataError, match="too long"):
        store(engine, [item])
    assert counts(engine) == (0, 0, 0)


def test_values_come_back_exactly_as_stored(engine: Engine) -> None:
    """The PostgreSQL path sends the rows as JSON text: floats, microseconds, time zones,
    non-ASCII text, quotes and nested JSON must survive the round trip unchanged."""
    import dataclasses

    when = datetime(2025, 3, 4, 12, 0, 0, 123457, tzinfo=timezone(timedelta(hours=-5)))
    news = make_news(
        1,
        headline='Société Générale "beats" \\ estimates — 北京 ✓',
        body="line one\nline two\ttabbed",
        url=None,
        published_at=when,
        extra={"quote": 'a "b"', "list": [1, 2.5, None], "unicode": "ü", "none": None},
    )
    exact = {"p_bearish": 1 / 3, "p_neutral": 2 / 3, "sentiment_score": -1e-300}
    item = dataclasses.replace(make_scored(news, 1), **exact)
    store(engine, [item])
    with Session(engine) as session:
        story = session.scalars(select(NewsItemRow)).one()
        prediction = session.scalars(select(PredictionRow)).one()
    assert (story.headline, story.body, story.url) == (news.headline, news.body, None)
    assert story.published_at == when and story.extra == news.extra
    assert (prediction.p_bearish, prediction.p_neutral, prediction.sentiment_score) == (1 / 3, 2 / 3, -1e-300)


def test_a_non_finite_probability_is_refused_with_a_clear_error(engine: Engine) -> None:
    import dataclasses

    item = dataclasses.replace(make_scored(make_news(1), 1), p_bearish=float("nan"))
    if engine.dialect.name == "sqlite":  # SQLite stores a NaN as NULL: the NOT NULL column refuses it
        with pytest.raises(IntegrityError):
            store(engine, [item])
    else:
        with pytest.raises(StatementError, match="JSON compliant"):
            store(engine, [item])
    assert counts(engine) == (0, 0, 0)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_the_pickled_job_table_is_dropped_keeping_only_its_time(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """0005: APScheduler's job table goes; its next run time is copied from the plain column,
    and the pickled job_state, planted here with a payload that would create a file, is
    never loaded."""
    import pickle

    marker = tmp_path / "unpickled"

    class Planted:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(marker), "w"))

    url = (
        request.getfixturevalue("fresh_postgres_url")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path}/db"
    )
    assert upgrade_database(url, revision="0004") == "0004"
    due = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES (:id, :t, :s)"),
                {"id": "finsent-retrain", "t": due.timestamp(), "s": pickle.dumps(Planted())},
            )
        assert upgrade_database(url) == head_revision()
        assert "apscheduler_jobs" not in inspect(engine).get_table_names()
        with Session(engine) as session:
            [row] = session.scalars(select(ScheduledJobRow)).all()
        assert (row.id, row.next_run_at, row.trigger) == ("finsent-retrain", due, None)
    finally:
        engine.dispose()
    assert not marker.exists()
