"""Retention: delete stories published before a cutoff, with their tickers and predictions.

Pure part: `retention_cutoff` (days -> the instant before which stories go). I/O part:
`count_older` (what a prune would delete, for the confirmation) and `prune_older` (the
deletion), both on a caller's engine.

Why bounded batches, each its own transaction: one DELETE of months of news would lock
millions of rows for minutes while the workers insert beside it, and an interrupted prune
would roll all of it back. A batch of at most `batch_size` stories (oldest first, by the
`published_at` index) is short, and a prune stopped half-way has deleted whole batches
only: running it again finishes the job.

Why the children are deleted explicitly although the foreign keys cascade: the same code
then keeps `news_tickers` and `predictions` consistent on PostgreSQL and SQLite whatever a
connection's foreign-key setting, and the counts it reports are exact. On PostgreSQL the
cascade still covers a prediction a worker inserts for a story between the two statements.

What a prune keeps: `labels` (each label carries its own text, so training never needs the
story), `alerts` and the outbox (their `event_ids` then name stories that are gone: the
dashboard shows such an alert without those headlines), `sentiment_buckets` (the counts
behind the overview's indices and the alerter's baselines), and the model registry.
Retention is by event time (`published_at`): a replay of old news is pruned by the next run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Engine, Table, delete, func, select

from services.storage.models import NewsItemRow, NewsTickerRow, PredictionRow
from services.storage.story_models import StoryBandRow, StoryMemberRow

NEWS = cast(Table, NewsItemRow.__table__)
TICKERS = cast(Table, NewsTickerRow.__table__)
PREDICTIONS = cast(Table, PredictionRow.__table__)
MEMBERS = cast(Table, StoryMemberRow.__table__)
STORY_TABLES = (MEMBERS, cast(Table, StoryBandRow.__table__))

MAX_BATCH = 10_000  # bound parameters per statement stay far below SQLite's and libpq's limits


@dataclass(frozen=True, slots=True)
class PruneCounts:
    news_items: int = 0
    predictions: int = 0
    news_tickers: int = 0
    batches: int = 0

    def __add__(self, other: PruneCounts) -> PruneCounts:
        return PruneCounts(
            self.news_items + other.news_items,
            self.predictions + other.predictions,
            self.news_tickers + other.news_tickers,
            self.batches + other.batches,
        )


def retention_cutoff(now: datetime, older_than_days: float) -> datetime:
    """Stories published before this instant are older than `older_than_days` at `now`."""
    if older_than_days <= 0:
        raise ValueError(f"older_than_days must be positive, not {older_than_days}")
    return now - timedelta(days=older_than_days)


def count_older(engine: Engine, cutoff: datetime) -> PruneCounts:
    """What `prune_older(engine, cutoff)` would delete now (batches: 0)."""
    older = select(NEWS.c.event_id).where(NEWS.c.published_at < cutoff)
    with engine.connect() as conn:
        stories = conn.execute(select(func.count()).select_from(older.subquery())).scalar_one()
        predictions = conn.execute(
            select(func.count()).select_from(PREDICTIONS).where(PREDICTIONS.c.event_id.in_(older))
        ).scalar_one()
        tickers = conn.execute(
            select(func.count()).select_from(TICKERS).where(TICKERS.c.event_id.in_(older))
        ).scalar_one()
    return PruneCounts(stories, predictions, tickers, 0)


def prune_older(
    engine: Engine,
    cutoff: datetime,
    *,
    batch_size: int = 5_000,
    on_batch: Callable[[PruneCounts], None] | None = None,
) -> PruneCounts:
    """Delete every story published before `cutoff` with its tickers and predictions, in
    transactions of at most `batch_size` stories; `on_batch` hears each committed batch.
    Returns the totals."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, not {batch_size}")
    total = PruneCounts()
    while True:
        with engine.begin() as conn:
            ids = (
                conn.execute(
                    select(NEWS.c.event_id)
                    .where(NEWS.c.published_at < cutoff)
                    .order_by(NEWS.c.published_at)
                    .limit(batch_size)
                )
                .scalars()
                .all()
            )
            if not ids:
                # story_members has no foreign key: a row whose item went another way (a replay
                # stored while its item was being pruned) goes by its own time (indexed). A
                # story_bands row left so is never read: band hits are joined to members.
                conn.execute(delete(MEMBERS).where(MEMBERS.c.published_at < cutoff))
                return total
            tickers = conn.execute(delete(TICKERS).where(TICKERS.c.event_id.in_(ids))).rowcount
            predictions = conn.execute(delete(PREDICTIONS).where(PREDICTIONS.c.event_id.in_(ids))).rowcount
            for table in STORY_TABLES:  # an item's story row and band keys go with it
                conn.execute(delete(table).where(table.c.event_id.in_(ids)))
            stories = conn.execute(delete(NEWS).where(NEWS.c.event_id.in_(ids))).rowcount
        batch = PruneCounts(stories, predictions, tickers, 1)
        total += batch
        if on_batch is not None:
            on_batch(batch)
