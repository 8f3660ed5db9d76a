"""Tables of the scoring pipeline (SQLAlchemy 2 typed ORM; PostgreSQL and SQLite).

`news_items` holds each story once (keyed by the message's stable `event_id`);
`predictions` holds one row per (story, model version), so a retrained model adds rows
instead of overwriting history. `published_at` is copied into `predictions` and
`news_tickers` so the dashboard and alerter time-range queries ("bearish Energy news in
the last hour", "everything on $AAPL today") are single-index range scans without a join.

Keep versions/*.py in step with this file: tests compare the migrated schema to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.storage.types import UTCDateTime

# Explicit constraint names: Alembic can then refer to (and SQLite batch mode recreate) them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EVENT_ID = String(128)
# BIGINT on PostgreSQL; INTEGER on SQLite, where only `INTEGER PRIMARY KEY` auto-increments.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


class NewsItemRow(Base):
    """One story, as first seen."""

    __tablename__ = "news_items"

    event_id: Mapped[str] = mapped_column(EVENT_ID, primary_key=True)
    headline: Mapped[str] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(index=True)
    received_at: Mapped[datetime]
    tickers: Mapped[list[str]]  # the same list as news_tickers, for reading a story in one row
    extra: Mapped[dict[str, Any]]
    kafka_partition: Mapped[int | None] = mapped_column(Integer)  # where it was first consumed
    kafka_offset: Mapped[int | None] = mapped_column(BigInteger)


class NewsTickerRow(Base):
    """Story <-> ticker, for indexed per-ticker time-range queries."""

    __tablename__ = "news_tickers"
    __table_args__ = (Index("ix_news_tickers_ticker_published_at", "ticker", "published_at"),)

    event_id: Mapped[str] = mapped_column(
        EVENT_ID, ForeignKey("news_items.event_id", ondelete="CASCADE"), primary_key=True
    )
    ticker: Mapped[str] = mapped_column(String(20), primary_key=True)
    published_at: Mapped[datetime]  # copy of news_items.published_at


class PredictionRow(Base):
    """One model version's labels for one story."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("event_id", "model_version"),
        Index("ix_predictions_topic_published_at", "topic", "published_at"),
        Index("ix_predictions_sentiment_published_at", "sentiment", "published_at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(EVENT_ID, ForeignKey("news_items.event_id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(64))
    topic_score: Mapped[float] = mapped_column(Float)
    sentiment: Mapped[str] = mapped_column(String(16))
    p_bearish: Mapped[float] = mapped_column(Float)
    p_neutral: Mapped[float] = mapped_column(Float)
    p_bullish: Mapped[float] = mapped_column(Float)
    sentiment_score: Mapped[float] = mapped_column(Float)  # p_bullish - p_bearish, in [-1, 1]
    published_at: Mapped[datetime] = mapped_column(index=True)  # copy of news_items.published_at
    scored_at: Mapped[datetime]
