"""Sentiment indices (market, topic, ticker) from the alerter's event-time buckets.

`sentiment_buckets` already holds per-minute counts per scope, so an index never touches the
story tables: a year of the market index is at most 525,600 rows of one primary-key range,
summed into coarser buckets by the database (`choose_width` keeps a chart near
`MAX_POINTS` points), so the page receives hundreds of rows, not hundreds of thousands.
The grid of coarser buckets is anchored at the Unix epoch like the stored one, so a
5-minute bucket is exactly five 1-minute buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pandas as pd
from sqlalchemy import ColumnElement, func, literal_column, select
from sqlalchemy.orm import Session

from dashboards.data.sql import dialect_of, epoch_seconds
from dashboards.movers import KeyCounts
from services.alerting import MARKET_KEY, Scope
from services.storage.alert_models import SentimentBucketRow

B = SentimentBucketRow
WIDTHS: Final[tuple[int, ...]] = (60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400)
MAX_POINTS: Final = 720
INDEX_COLUMNS: Final = (
    "bucket_start",
    "total",
    "bearish",
    "neutral",
    "bullish",
    "mean_score",
    "bearish_share",
)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("time range bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty time range: {self.start} .. {self.end}")

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    @classmethod
    def ending(cls, end: datetime, span: timedelta) -> TimeRange:
        return cls(end - span, end)


def choose_width(span: timedelta, *, base_seconds: int = 60, max_points: int = MAX_POINTS) -> int:
    """The narrowest bucket width (a multiple of the stored one) giving at most `max_points`."""
    seconds = span.total_seconds()
    for width in WIDTHS:
        if width >= base_seconds and width % base_seconds == 0 and seconds / width <= max_points:
            return width
    return max(WIDTHS[-1], base_seconds)


def key_for(scope: Scope, key: str | None) -> str:
    return MARKET_KEY if scope == "market" else (key or "")


def index_series(
    session: Session, *, scope: Scope, key: str | None, period: TimeRange, width: int, base_width: int = 60
) -> pd.DataFrame:
    """One row per non-empty `width`-second bucket: counts, mean score, bearish share."""
    if width % base_width:
        raise ValueError(f"width {width} s is not a multiple of the stored {base_width} s buckets")
    bucket = _bucket_start(dialect_of(session), width).label("bucket")
    stmt = (
        select(
            bucket,
            func.sum(B.total),
            func.sum(B.bearish),
            func.sum(B.neutral),
            func.sum(B.bullish),
            func.sum(B.score_sum),
        )
        .where(
            B.scope == scope,
            B.key == key_for(scope, key),
            B.width_seconds == base_width,
            B.bucket_start >= period.start,
            B.bucket_start < period.end,
        )
        .group_by(bucket)
        .order_by(bucket)
    )
    rows = [
        _index_row(_epoch(b), int(t or 0), int(be or 0), int(ne or 0), int(bu or 0), float(s or 0.0))
        for b, t, be, ne, bu, s in session.execute(stmt).tuples()
    ]
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def _bucket_start(dialect: str, width: int) -> ColumnElement[Any]:
    """The start of each `width`-second bucket. On PostgreSQL `date_bin` groups on the
    timestamp itself: grouping a year of minute rows by a numeric epoch expression sorted on
    disk (1.3 s at 1M stories; benchmarks/results/dashboard_queries.md). `width` comes from
    WIDTHS (an int), never from a user, so it is rendered into the interval literal."""
    if dialect == "postgresql":
        return func.date_bin(
            literal_column(f"'{int(width)} seconds'::interval"),
            B.bucket_start,
            literal_column("'1970-01-01 00:00:00+00'::timestamptz"),
        )
    return func.floor(epoch_seconds(dialect, B.bucket_start) / width) * width


def _epoch(bucket: datetime | float | int) -> int:
    return int(bucket.timestamp()) if isinstance(bucket, datetime) else int(bucket)


def _index_row(epoch: int, total: int, bearish: int, neutral: int, bullish: int, score_sum: float) -> tuple:
    return (
        datetime.fromtimestamp(epoch, UTC),
        total,
        bearish,
        neutral,
        bullish,
        score_sum / total if total else 0.0,
        bearish / total if total else 0.0,
    )


def scope_summary(
    session: Session, *, scope: Scope, period: TimeRange, base_width: int = 60, limit: int = 50
) -> pd.DataFrame:
    """Per key of `scope` over `period`: stories, bearish share, mean score (busiest first)."""
    total = func.sum(B.total)
    stmt = (
        select(B.key, total, func.sum(B.bearish), func.sum(B.score_sum))
        .where(
            B.scope == scope,
            B.width_seconds == base_width,
            B.bucket_start >= period.start,
            B.bucket_start < period.end,
        )
        .group_by(B.key)
        .order_by(total.desc(), B.key)
        .limit(limit)
    )
    rows = [
        (k, int(t), int(be), (be / t) if t else 0.0, (s / t) if t else 0.0)
        for k, t, be, s in session.execute(stmt).tuples()
    ]
    return pd.DataFrame(rows, columns=["key", "total", "bearish", "bearish_share", "mean_score"])


def newest_bucket(
    session: Session, *, base_width: int = 60, not_after: datetime | None = None
) -> datetime | None:
    """Start of the newest market bucket: where "now" is for a stream (live or replayed).

    Buckets that start after `not_after` (pass the current time) are passed over: a story
    dated in the future (the scorer refuses those beyond FINSENT_MAX_FUTURE_SKEW_SECONDS, but
    rows stored before that rule, or within the skew, remain) must not become the end of every
    range. A replay of old news still anchors at its own newest minute."""
    stmt = select(func.max(B.bucket_start)).where(
        B.scope == "market", B.key == MARKET_KEY, B.width_seconds == base_width
    )
    if not_after is not None:
        stmt = stmt.where(B.bucket_start <= not_after)
    return session.scalar(stmt)


def mover_counts(
    session: Session,
    *,
    scope: Scope,
    window: TimeRange,
    baseline: TimeRange,
    base_width: int = 60,
    max_keys: int = 500,
) -> tuple[list[KeyCounts], int, int]:
    """Counts for `dashboards.movers.rank_movers`: every key of `scope` with bearish stories
    in `window` (at most `max_keys`, most bearish first) with its counts in `window` and in
    `baseline`, and the market's stories in each. Two grouped range scans of the buckets."""

    def totals(period: TimeRange, *, keys: list[str] | None = None) -> list[tuple[str, int, int]]:
        bearish = func.sum(B.bearish)
        stmt = select(B.key, func.sum(B.total), bearish).where(
            B.scope == scope,
            B.width_seconds == base_width,
            B.bucket_start >= period.start,
            B.bucket_start < period.end,
        )
        if keys is not None:
            stmt = stmt.where(B.key.in_(keys))
        stmt = stmt.group_by(B.key)
        if keys is None:
            stmt = stmt.having(bearish > 0).order_by(bearish.desc(), B.key).limit(max_keys)
        return [(k, int(t or 0), int(b or 0)) for k, t, b in session.execute(stmt).tuples()]

    def market(period: TimeRange) -> int:
        stmt = select(func.sum(B.total)).where(
            B.scope == "market",
            B.key == MARKET_KEY,
            B.width_seconds == base_width,
            B.bucket_start >= period.start,
            B.bucket_start < period.end,
        )
        return int(session.scalar(stmt) or 0)

    now = totals(window)
    before = {k: (t, b) for k, t, b in totals(baseline, keys=[k for k, _, _ in now])} if now else {}
    rows = [KeyCounts(scope, k, t, b, *before.get(k, (0, 0))) for k, t, b in now]
    return rows, market(window), market(baseline)
