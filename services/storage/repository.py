"""Keyword-only data access for the pipeline.

`upsert_scored_batch` is the scorer's one write per micro-batch: three bulk
`INSERT … ON CONFLICT DO NOTHING` statements (news_items, news_tickers, predictions;
`services.storage.bulk`) in
the caller's transaction. Replaying a batch, or a batch that partly overlaps what is
stored, changes nothing that is there: a story keeps its first sighting, and a model
version scores a story at most once. The caller commits, then commits Kafka offsets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.schemas import NewsItem
from services.storage.bulk import insert_ignoring_conflicts
from services.storage.models import NewsItemRow, NewsTickerRow, PredictionRow

NEWS_ITEMS = cast(Table, NewsItemRow.__table__)
NEWS_TICKERS = cast(Table, NewsTickerRow.__table__)
PREDICTIONS = cast(Table, PredictionRow.__table__)


@dataclass(frozen=True, slots=True)
class ScoredItem:
    """A news item with one model version's labels: one row of the scorer's output."""

    event_id: str
    headline: str
    published_at: datetime
    received_at: datetime
    model_version: str
    topic: str
    topic_score: float
    sentiment: str
    p_bearish: float
    p_neutral: float
    p_bullish: float
    sentiment_score: float
    scored_at: datetime
    body: str | None = None
    source: str | None = None
    url: str | None = None
    tickers: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    kafka_partition: int | None = None
    kafka_offset: int | None = None

    @classmethod
    def from_news(cls, item: NewsItem, **prediction: Any) -> ScoredItem:
        """`item`'s fields plus the prediction fields (model_version, topic, …, scored_at)."""
        return cls(
            event_id=item.event_id,
            headline=item.headline,
            published_at=item.published_at,
            received_at=item.received_at,
            body=item.body,
            source=item.source,
            url=item.url,
            tickers=item.tickers,
            extra=item.extra,
            **prediction,
        )


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """Rows newly inserted by one batch (0 everywhere for a replay)."""

    news_items: int
    news_tickers: int
    predictions: int


@dataclass(frozen=True, slots=True)
class StoredPrediction:
    """A prediction joined with its story, as the dashboard and alerter read it."""

    event_id: str
    headline: str
    source: str | None
    url: str | None
    published_at: datetime
    tickers: list[str]
    model_version: str
    topic: str
    topic_score: float
    sentiment: str
    p_bearish: float
    p_neutral: float
    p_bullish: float
    sentiment_score: float
    scored_at: datetime


def dialect_insert(session: Session) -> Callable[[Table], Any]:
    """The INSERT construct with ON CONFLICT of the session's database (PostgreSQL or SQLite):
    every idempotent write in finsent is an upsert through it."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"upserts are implemented for PostgreSQL and SQLite, not {name}")


def upsert_scored_batch(session: Session, *, items: Sequence[ScoredItem]) -> UpsertCounts:
    """Store a scored batch idempotently in the caller's transaction; return what was new.

    Within a batch the first occurrence of an event_id (and of an event_id/model_version
    pair) wins. Ticker rows are written only with a newly stored story, and every copy of
    `published_at` comes from the stored story, so a late duplicate with another time
    cannot make the copies disagree.
    """
    if not items:
        return UpsertCounts(0, 0, 0)
    stories: dict[str, ScoredItem] = {}
    for item in items:
        stories.setdefault(item.event_id, item)

    story_rows = [
        {
            "event_id": s.event_id,
            "headline": s.headline,
            "body": s.body,
            "source": s.source,
            "url": s.url,
            "published_at": s.published_at,
            "received_at": s.received_at,
            "tickers": list(s.tickers),
            "extra": s.extra,
            "kafka_partition": s.kafka_partition,
            "kafka_offset": s.kafka_offset,
        }
        for s in stories.values()
    ]
    new_ids = set(
        insert_ignoring_conflicts(
            session, NEWS_ITEMS, story_rows, conflict=["event_id"], returning="event_id"
        )
    )

    published = {event_id: s.published_at for event_id, s in stories.items() if event_id in new_ids}
    seen_before = [event_id for event_id in stories if event_id not in new_ids]
    if seen_before:
        stored = select(NewsItemRow.event_id, NewsItemRow.published_at).where(
            NewsItemRow.event_id.in_(seen_before)
        )
        published.update({event_id: when for event_id, when in session.execute(stored).tuples()})

    ticker_rows = [
        {"event_id": event_id, "ticker": ticker, "published_at": published[event_id]}
        for event_id in stories
        if event_id in new_ids
        for ticker in stories[event_id].tickers
    ]
    n_tickers = 0
    if ticker_rows:
        n_tickers = len(
            insert_ignoring_conflicts(
                session, NEWS_TICKERS, ticker_rows, conflict=["event_id", "ticker"], returning="event_id"
            )
        )

    scored: dict[tuple[str, str], ScoredItem] = {}
    for item in items:
        scored.setdefault((item.event_id, item.model_version), item)
    prediction_rows = [
        {
            "event_id": p.event_id,
            "model_version": p.model_version,
            "topic": p.topic,
            "topic_score": p.topic_score,
            "sentiment": p.sentiment,
            "p_bearish": p.p_bearish,
            "p_neutral": p.p_neutral,
            "p_bullish": p.p_bullish,
            "sentiment_score": p.sentiment_score,
            "published_at": published[p.event_id],
            "scored_at": p.scored_at,
        }
        for p in scored.values()
    ]
    n_predictions = len(
        insert_ignoring_conflicts(
            session, PREDICTIONS, prediction_rows, conflict=["event_id", "model_version"], returning="id"
        )
    )
    return UpsertCounts(news_items=len(new_ids), news_tickers=n_tickers, predictions=n_predictions)


def count_items(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(NewsItemRow)) or 0


def count_predictions(session: Session, *, model_version: str | None = None) -> int:
    stmt = select(func.count()).select_from(PredictionRow)
    if model_version is not None:
        stmt = stmt.where(PredictionRow.model_version == model_version)
    return session.scalar(stmt) or 0


def predictions_in_range(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    topic: str | None = None,
    ticker: str | None = None,
    sentiment: str | None = None,
    model_version: str | None = None,
    limit: int = 1_000,
) -> list[StoredPrediction]:
    """Predictions of stories published in [start, end), newest first, optionally filtered.

    Without `model_version` a story scored by several versions appears once per version.
    """
    stmt = (
        select(PredictionRow, NewsItemRow.headline, NewsItemRow.source, NewsItemRow.url, NewsItemRow.tickers)
        .join(NewsItemRow, NewsItemRow.event_id == PredictionRow.event_id)
        .where(PredictionRow.published_at >= start, PredictionRow.published_at < end)
    )
    if topic is not None:
        stmt = stmt.where(PredictionRow.topic == topic)
    if sentiment is not None:
        stmt = stmt.where(PredictionRow.sentiment == sentiment)
    if model_version is not None:
        stmt = stmt.where(PredictionRow.model_version == model_version)
    if ticker is not None:
        stmt = stmt.join(
            NewsTickerRow,
            (NewsTickerRow.event_id == PredictionRow.event_id)
            & (NewsTickerRow.ticker == ticker.strip().upper())
            # the same range on the ticker table lets the (ticker, published_at) index drive the query
            & (NewsTickerRow.published_at >= start)
            & (NewsTickerRow.published_at < end),
        )
    stmt = stmt.order_by(PredictionRow.published_at.desc(), PredictionRow.id.desc()).limit(limit)
    return [
        StoredPrediction(
            event_id=p.event_id,
            headline=headline,
            source=source,
            url=url,
            published_at=p.published_at,
            tickers=list(tickers),
            model_version=p.model_version,
            topic=p.topic,
            topic_score=p.topic_score,
            sentiment=p.sentiment,
            p_bearish=p.p_bearish,
            p_neutral=p.p_neutral,
            p_bullish=p.p_bullish,
            sentiment_score=p.sentiment_score,
            scored_at=p.scored_at,
        )
        for p, headline, source, url, tickers in session.execute(stmt).tuples()
    ]
