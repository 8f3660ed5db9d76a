"""Seeded synthetic scored streams for the alert unit tests (labels and times only).

The detector sees counts, not text, so unit tests need no headlines: items carry a topic
from a skewed 20-topic mix, a sentiment at the seed data's rates (15 % bearish, 20 %
bullish, 65 % neutral) and occasionally a ticker. The real-headline streams are built
by benchmarks/alert_detector.py and the integration tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bert_core.labels import TOPIC_LABELS

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
TOPIC_WEIGHTS = [20 - i for i in range(len(TOPIC_LABELS))]  # most common topic ~9.5 %
TICKERS = ("AAPL", "TSLA", "AMZN", "JPM", "XOM")
SCORE = {"bearish": -0.9, "neutral": 0.0, "bullish": 0.9}


@dataclass(frozen=True, slots=True)
class Item:
    event_id: str
    published_at: datetime
    topic: str
    sentiment: str
    sentiment_score: float
    tickers: tuple[str, ...] = ()


def item(
    event_id: str,
    at: datetime,
    *,
    topic: str = "Markets",
    sentiment: str = "neutral",
    tickers: tuple[str, ...] = (),
) -> Item:
    return Item(event_id, at, topic, sentiment, SCORE[sentiment], tickers)


def calm(
    *, minutes: int, seed: int = 1, rate_per_min: float = 3.0, start: datetime = T0, prefix: str = "calm"
) -> list[Item]:
    """Independent items at `rate_per_min` (Poisson arrivals) for `minutes` of event time."""
    rng = random.Random(seed)
    items: list[Item] = []
    t = 0.0
    n = 0
    while True:
        t += rng.expovariate(rate_per_min)
        if t >= minutes:
            return items
        sentiment = rng.choices(("bearish", "bullish", "neutral"), weights=(15, 20, 65))[0]
        topic = rng.choices(TOPIC_LABELS, weights=TOPIC_WEIGHTS)[0]
        tickers = (rng.choice(TICKERS),) if rng.random() < 0.2 else ()
        items.append(
            item(
                f"{prefix}-{n}",
                start + timedelta(minutes=t),
                topic=topic,
                sentiment=sentiment,
                tickers=tickers,
            )
        )
        n += 1


def burst(
    *,
    size: int,
    start: datetime,
    minutes: float = 8.0,
    topic: str = "Energy / Oil",
    tickers: tuple[str, ...] = (),
    prefix: str = "burst",
) -> list[Item]:
    """`size` bearish items spread evenly over `minutes` from `start`."""
    return [
        item(
            f"{prefix}-{i}",
            start + timedelta(minutes=minutes * i / size),
            topic=topic,
            sentiment="bearish",
            tickers=tickers,
        )
        for i in range(size)
    ]


def end_of(items: list[Item], width: timedelta = timedelta(minutes=1)) -> datetime:
    """The first bucket boundary after the last item: a valid `until` for all of them."""
    last = max(i.published_at for i in items)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((last - epoch) // width + 1) * width
