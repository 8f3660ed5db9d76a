from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.alerting import (
    MARKET_KEY,
    BucketCounts,
    aggregate,
    bearish_event_ids,
    bucket_start,
    buckets_from_rows,
    touched_starts,
)

from .alert_streams import T0, Item, calm, item

MIN = timedelta(minutes=1)


def test_bucket_start_floors_on_a_utc_grid() -> None:
    assert bucket_start(datetime(2025, 3, 3, 12, 7, 59, 999999, tzinfo=UTC)) == datetime(
        2025, 3, 3, 12, 7, tzinfo=UTC
    )
    # The same instant written in another zone lands in the same (UTC) bucket.
    india = timezone(timedelta(hours=5, minutes=30))
    assert bucket_start(datetime(2025, 3, 3, 17, 37, 30, tzinfo=india)) == datetime(
        2025, 3, 3, 12, 7, tzinfo=UTC
    )
    assert bucket_start(datetime(2025, 3, 3, 12, 7, 30, tzinfo=india), timedelta(hours=1)) == datetime(
        2025, 3, 3, 6, 0, tzinfo=UTC
    )
    # Widths that do not divide an hour are still anchored at the epoch, not at the item.
    assert bucket_start(datetime(1970, 1, 1, 0, 13, tzinfo=UTC), timedelta(minutes=7)) == datetime(
        1970, 1, 1, 0, 7, tzinfo=UTC
    )
    boundary = datetime(2025, 3, 3, 12, 5, tzinfo=UTC)
    assert bucket_start(boundary, timedelta(minutes=5)) == boundary


def test_bucket_start_refuses_naive_times_and_bad_widths() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        bucket_start(datetime(2025, 3, 3, 12, 7))
    with pytest.raises(ValueError, match="positive"):
        bucket_start(T0, timedelta(0))


def test_aggregate_counts_every_scope() -> None:
    rows = [
        item(
            "a", T0 + timedelta(seconds=5), topic="Energy / Oil", sentiment="bearish", tickers=("XOM", "CVX")
        ),
        item(
            "b", T0 + timedelta(seconds=50), topic="Energy / Oil", sentiment="bullish", tickers=("XOM", "XOM")
        ),
        item("c", T0 + timedelta(seconds=59), topic="Macro", sentiment="neutral"),
        item("d", T0 + timedelta(seconds=61), topic="Macro", sentiment="bearish"),
    ]
    got = aggregate(rows)
    assert got[("market", MARKET_KEY, T0)] == BucketCounts("market", MARKET_KEY, T0, 3, 1, 1, 1, 0.0)
    assert got[("topic", "Energy / Oil", T0)] == BucketCounts("topic", "Energy / Oil", T0, 2, 1, 0, 1, 0.0)
    # A ticker mentioned twice in one story counts once.
    assert got[("ticker", "XOM", T0)] == BucketCounts("ticker", "XOM", T0, 2, 1, 0, 1, 0.0)
    assert got[("ticker", "CVX", T0)].bearish == 1
    macro_next = got[("topic", "Macro", T0 + MIN)]
    assert (macro_next.total, macro_next.bearish, macro_next.mean_score) == (1, 1, -0.9)
    assert got[("market", MARKET_KEY, T0 + MIN)].bearish_share == 1.0
    assert ("topic", "Macro", T0) in got and ("ticker", "XOM", T0 + MIN) not in got
    # Series order: time, then market, topics, tickers.
    keys = [b.bucket_key for b in buckets_from_rows(rows)]
    assert keys[:3] == [("market", "*", T0), ("topic", "Energy / Oil", T0), ("topic", "Macro", T0)]
    assert keys[-2:] == [("market", "*", T0 + MIN), ("topic", "Macro", T0 + MIN)]


def test_duplicates_count_once_and_order_does_not_matter() -> None:
    rows = calm(minutes=60, seed=3)
    reference = aggregate(rows)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    replayed = shuffled + rows[::3]  # at-least-once delivery: some stories twice
    assert aggregate(replayed) == reference  # bit-for-bit, score sums included
    assert sum(b.total for b in reference.values() if b.scope == "market") == len(rows)


def test_first_sighting_of_a_story_wins() -> None:
    first = item("x", T0, sentiment="bearish")
    rescored = item("x", T0 + timedelta(minutes=3), sentiment="bullish")
    got = aggregate([first, rescored])
    assert got[("market", MARKET_KEY, T0)].bearish == 1
    assert ("market", MARKET_KEY, T0 + 3 * MIN) not in got


def test_unknown_sentiment_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sentiment"):
        aggregate([Item("a", T0, "Macro", "sad", 0.0)])


def test_bearish_event_ids_and_touched_starts() -> None:
    rows = [
        item("b2", T0 + timedelta(seconds=30), topic="Macro", sentiment="bearish", tickers=("JPM",)),
        item("b1", T0 + timedelta(seconds=10), topic="Macro", sentiment="bearish"),
        item("n1", T0 + timedelta(seconds=20), topic="Macro", sentiment="neutral"),
        item("b3", T0 + timedelta(minutes=4), topic="IPO", sentiment="bearish"),
    ]
    ids = bearish_event_ids(rows)
    assert ids[("market", MARKET_KEY, T0)] == ("b1", "b2")
    assert ids[("topic", "Macro", T0)] == ("b1", "b2")
    assert ids[("ticker", "JPM", T0)] == ("b2",)
    assert ids[("topic", "IPO", T0 + 4 * MIN)] == ("b3",)
    assert touched_starts(rows) == [T0, T0 + 4 * MIN]
    assert touched_starts(rows, timedelta(minutes=5)) == [T0]
