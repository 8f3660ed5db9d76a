"""Event-time sentiment buckets: per (scope, key, bucket start) counts of scored stories.

Pure functions, no I/O. Buckets are keyed by `published_at` (event time), floored to a
UTC-aligned grid, so a replay of yesterday's news lands in the same buckets the live
stream filled, and the dashboard and the spike detector read the same series.

Idempotency: counts are never incremented in place. The storage layer recomputes a whole
bucket from the stored predictions (one row per story, first sighting wins) whenever a
batch touches it, and upserts the result. A replayed or duplicated message then changes
nothing, and a late story simply makes the next recomputation of its bucket include it.
`touched_starts` says which buckets a batch touched; `aggregate` builds the counts from
the rows stored for those buckets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, Protocol

Scope = Literal["market", "topic", "ticker"]
SCOPES: Final[tuple[Scope, ...]] = ("market", "topic", "ticker")
MARKET_KEY: Final = "*"

# (scope, key, bucket start): the identity of one bucket, also its upsert key.
BucketKey = tuple[Scope, str, datetime]

DEFAULT_WIDTH: Final = timedelta(minutes=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class ScoredRow(Protocol):
    """What bucketing reads from a story: `ScoredItem` and `StoredPrediction` both fit."""

    @property
    def event_id(self) -> str: ...
    @property
    def published_at(self) -> datetime: ...
    @property
    def topic(self) -> str: ...
    @property
    def sentiment(self) -> str: ...
    @property
    def sentiment_score(self) -> float: ...
    @property
    def tickers(self) -> Sequence[str]: ...


def _check_width(width: timedelta) -> None:
    if width <= timedelta(0):
        raise ValueError(f"bucket width must be positive, got {width}")


def bucket_start(ts: datetime, width: timedelta = DEFAULT_WIDTH) -> datetime:
    """The start of the bucket holding `ts`, floored on a grid anchored at the Unix epoch.

    Anchoring at the epoch (not at midnight or at the first item) keeps every process and
    every replay on the same grid, whatever the width. Naive datetimes are refused: their
    zone would be a guess, and a wrong guess moves items between buckets.
    """
    _check_width(width)
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {ts!r}")
    return _EPOCH + ((ts.astimezone(UTC) - _EPOCH) // width) * width


@dataclass(frozen=True, slots=True)
class BucketCounts:
    """Counts of the stories in one bucket of one scope (the `sentiment_buckets` row)."""

    scope: Scope
    key: str
    start: datetime
    total: int
    bearish: int
    neutral: int
    bullish: int
    score_sum: float  # sum of sentiment_score (p_bullish - p_bearish) over the bucket's stories

    @property
    def bucket_key(self) -> BucketKey:
        return (self.scope, self.key, self.start)

    @property
    def mean_score(self) -> float:
        """Mean sentiment score in [-1, 1]; 0.0 (neutral) for an empty bucket."""
        return self.score_sum / self.total if self.total else 0.0

    @property
    def bearish_share(self) -> float:
        return self.bearish / self.total if self.total else 0.0


def scope_keys(row: ScoredRow) -> list[tuple[Scope, str]]:
    """Every (scope, key) a story counts in: the market, its topic, each distinct ticker."""
    keys: list[tuple[Scope, str]] = [("market", MARKET_KEY), ("topic", row.topic)]
    keys.extend(("ticker", t) for t in sorted(set(row.tickers)))
    return keys


def _unique_stories(rows: Iterable[ScoredRow]) -> list[ScoredRow]:
    # First sighting wins, as in storage (INSERT … ON CONFLICT DO NOTHING): a duplicate
    # delivery of a story must not count twice.
    seen: dict[str, ScoredRow] = {}
    for row in rows:
        seen.setdefault(row.event_id, row)
    return list(seen.values())


def aggregate(rows: Iterable[ScoredRow], width: timedelta = DEFAULT_WIDTH) -> dict[BucketKey, BucketCounts]:
    """Bucket counts of every scope from a set of stories (one prediction per story).

    The result depends on the set of stories only, not on their order: duplicates of an
    event_id count once, and score sums use `math.fsum` (exactly rounded), so a late
    story gives bit-for-bit the counts the in-order stream would have given.
    """
    _check_width(width)
    counts: dict[BucketKey, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    scores: dict[BucketKey, list[float]] = defaultdict(list)
    column = {"bearish": 1, "neutral": 2, "bullish": 3}
    for row in _unique_stories(rows):
        if row.sentiment not in column:
            raise ValueError(f"story {row.event_id}: unknown sentiment {row.sentiment!r}")
        start = bucket_start(row.published_at, width)
        for scope, key in scope_keys(row):
            bkey: BucketKey = (scope, key, start)
            c = counts[bkey]
            c[0] += 1
            c[column[row.sentiment]] += 1
            scores[bkey].append(row.sentiment_score)
    return {
        bkey: BucketCounts(
            scope=bkey[0],
            key=bkey[1],
            start=bkey[2],
            total=c[0],
            bearish=c[1],
            neutral=c[2],
            bullish=c[3],
            score_sum=math.fsum(scores[bkey]),
        )
        for bkey, c in sorted(counts.items(), key=lambda kv: series_order(kv[0]))
    }


def buckets_from_rows(rows: Iterable[ScoredRow], width: timedelta = DEFAULT_WIDTH) -> list[BucketCounts]:
    """`aggregate` as a list in series order (start, then market, topics, tickers)."""
    return list(aggregate(rows, width).values())


def bearish_event_ids(
    rows: Iterable[ScoredRow], width: timedelta = DEFAULT_WIDTH
) -> dict[BucketKey, tuple[str, ...]]:
    """The bearish stories of each bucket: the evidence a detection on that bucket cites."""
    ids: dict[BucketKey, set[str]] = defaultdict(set)
    for row in _unique_stories(rows):
        if row.sentiment != "bearish":
            continue
        start = bucket_start(row.published_at, width)
        for scope, key in scope_keys(row):
            ids[(scope, key, start)].add(row.event_id)
    return {bkey: tuple(sorted(v)) for bkey, v in ids.items()}


def touched_starts(rows: Iterable[ScoredRow], width: timedelta = DEFAULT_WIDTH) -> list[datetime]:
    """Bucket starts a batch of stories falls into: the buckets to recompute and upsert."""
    return sorted({bucket_start(row.published_at, width) for row in rows})


_SCOPE_ORDER: Final[dict[str, int]] = {s: i for i, s in enumerate(SCOPES)}


def series_order(bkey: BucketKey) -> tuple[datetime, int, str]:
    """Sort key of a bucket in a series: time first, then market, topics, tickers by name."""
    return (bkey[2], _SCOPE_ORDER[bkey[0]], bkey[1])
