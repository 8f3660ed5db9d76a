"""Scored news streams from real headlines, for the alerter's integration tests.

Headlines and their true sentiment labels come from the packaged seed data (bert_core.seed_data)
(15 % bearish), tickers from their cashtags, topics drawn from topic_train.csv's label
distribution (the two files label different texts, so a story's topic is not its
headline's; the detector sees labels and counts only). Event times are assigned here:
Poisson arrivals at 3 stories a minute, like benchmarks/alert_detector.py.

The tests play the scorer's part with these: `play` stores a batch with the scorer's own
upsert (the true label as the prediction), commits, then produces the batch's `news.scored`
messages with the scorer's own `scored_message` — the order the scorer does it in.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bert_core.labels import TOPIC_LABELS
from bert_core.seed_data import packaged_seed_data
from services.alerting import Action, DetectorConfig, aggregate, apply, bucket_start, detect
from services.ingest.producer import NewsProducer
from services.schemas import extract_tickers
from services.scorer.app import scored_message
from services.storage import ScoredItem, upsert_scored_batch

SEED_FILES = packaged_seed_data()
SENTIMENTS = {0: "bearish", 1: "bullish", 2: "neutral"}
SCORE = {"bearish": -1.0, "neutral": 0.0, "bullish": 1.0}
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday morning; long past, so never "live"
MODEL_VERSION = "true-labels"


@dataclass(frozen=True, slots=True)
class Headline:
    index: int
    text: str
    sentiment: str
    tickers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Corpus:
    headlines: list[Headline]
    topic_weights: list[float]

    def by_sentiment(self, sentiment: str) -> list[Headline]:
        return [h for h in self.headlines if h.sentiment == sentiment]


@cache
def corpus() -> Corpus:
    with SEED_FILES["sentiment"].open(newline="", encoding="utf-8") as f:
        rows = [(r["text"], SENTIMENTS[int(r["label"])]) for r in csv.DictReader(f)]
    headlines = [Headline(i, t, s, tuple(extract_tickers(t))) for i, (t, s) in enumerate(rows)]
    with SEED_FILES["topic"].open(newline="", encoding="utf-8") as f:
        counts = Counter(int(r["label"]) for r in csv.DictReader(f))
    return Corpus(headlines, [counts[i] for i in range(len(TOPIC_LABELS))])


def scored(
    event_id: str, headline: Headline, at: datetime, *, topic: str, tickers: Sequence[str] | None = None
) -> ScoredItem:
    """The scorer's output for `headline` published at `at`, with its true sentiment."""
    s = headline.sentiment
    return ScoredItem(
        event_id=event_id,
        headline=headline.text,
        published_at=at,
        received_at=at,
        model_version=MODEL_VERSION,
        topic=topic,
        topic_score=1.0,
        sentiment=s,
        p_bearish=float(s == "bearish"),
        p_neutral=float(s == "neutral"),
        p_bullish=float(s == "bullish"),
        sentiment_score=SCORE[s],
        scored_at=at,
        source="tfn",
        tickers=tuple(headline.tickers if tickers is None else tickers),
    )


def calm(
    *, minutes: float, seed: int, start: datetime = T0, rate_per_min: float = 3.0, prefix: str = "calm"
) -> list[ScoredItem]:
    """Independent stories: random headlines (any sentiment) at Poisson times, random topics."""
    c = corpus()
    rng = random.Random(seed)
    items: list[ScoredItem] = []
    t = rng.expovariate(rate_per_min)
    while t < minutes:
        h = c.headlines[rng.randrange(len(c.headlines))]
        topic = rng.choices(TOPIC_LABELS, weights=c.topic_weights)[0]
        items.append(scored(f"{prefix}-{len(items)}-{h.index}", h, start + timedelta(minutes=t), topic=topic))
        t += rng.expovariate(rate_per_min)
    return items


def topic_burst(
    *,
    topic: str,
    size: int,
    start: datetime,
    minutes: float,
    seed: int,
    prefix: str = "burst",
    sentiment: str = "bearish",
) -> list[ScoredItem]:
    """`size` distinct (bearish) headlines on `topic`, evenly over `minutes`. Headlines without
    cashtags: the burst is about the topic, and must not look like one about a ticker."""
    pool = [h for h in corpus().by_sentiment(sentiment) if not h.tickers]
    chosen = random.Random(seed).sample(pool, size)
    return [
        scored(f"{prefix}-{i}-{h.index}", h, start + timedelta(minutes=minutes * i / size), topic=topic)
        for i, h in enumerate(chosen)
    ]


def ticker_burst(
    *, ticker: str, size: int, start: datetime, minutes: float, seed: int, prefix: str = "tburst"
) -> list[ScoredItem]:
    """`size` distinct real bearish headlines that mention `ticker` (by cashtag), evenly over
    `minutes`, on random topics."""
    c = corpus()
    pool = [h for h in c.by_sentiment("bearish") if ticker in h.tickers]
    rng = random.Random(seed)
    chosen = rng.sample(pool, size)
    return [
        scored(
            f"{prefix}-{i}-{h.index}",
            h,
            start + timedelta(minutes=minutes * i / size),
            topic=rng.choices(TOPIC_LABELS, weights=c.topic_weights)[0],
        )
        for i, h in enumerate(chosen)
    ]


def in_event_order(*streams: Iterable[ScoredItem]) -> list[ScoredItem]:
    return sorted((i for s in streams for i in s), key=lambda i: (i.published_at, i.event_id))


def batches(items: Sequence[ScoredItem], size: int) -> list[Sequence[ScoredItem]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def store(engine: Engine, items: Sequence[ScoredItem]) -> None:
    """What the scorer's transaction does with a batch."""
    with Session(engine) as session:
        upsert_scored_batch(session, items=items)
        session.commit()


def play(engine: Engine, bootstrap: str, topic: str, items: Sequence[ScoredItem], *, batch: int = 30) -> int:
    """Play the scorer: per batch, store and commit, then produce its `news.scored` messages
    (keyed by event id) and wait for the broker's acks. Returns the messages produced."""
    sent = 0
    with NewsProducer(bootstrap, topic=topic, client_id="test-scorer") as producer:
        for chunk in batches(items, batch):
            store(engine, chunk)
            for item in chunk:
                producer.send_raw(scored_message(item), item.event_id)
            producer.flush()
            sent += len(chunk)
    return sent


def expected_actions(
    items: Sequence[ScoredItem],
    *,
    lateness: timedelta = timedelta(seconds=120),
    until: datetime | None = None,
    config: DetectorConfig | None = None,
) -> list[Action]:
    """The reference: the pure pipeline (default settings) run once over the whole stream,
    up to `until`, by default where the alerter's watermark ends (the last story minus the
    allowed lateness)."""
    if until is None:
        until = bucket_start(max(i.published_at for i in items) - lateness)
    buckets = [b for b in aggregate(items).values() if b.start < until]
    return apply(None, detect(buckets, until=until, config=config).detections, now=until).actions


def issue_topic_stream(
    *, topic: str, burst_start: datetime, minutes: float = 180.0, seed: int = 1
) -> tuple[list[ScoredItem], list[ScoredItem]]:
    """The issue's first case: `topic` normally carries about 2 stories per 10 minutes, half
    of them bearish, in a calm market of 3 stories a minute; from `burst_start` it receives
    30 stories in 10 minutes, 22 of them bearish (real headlines without cashtags, in a
    seeded order). Returns (whole stream, the burst)."""
    c = corpus()
    rng = random.Random(seed)
    market = [i for i in calm(minutes=minutes, seed=seed) if i.topic != topic]
    bearish = [h for h in c.by_sentiment("bearish") if not h.tickers]
    other = [h for h in c.headlines if h.sentiment != "bearish" and not h.tickers]
    usual: list[ScoredItem] = []
    t = rng.expovariate(0.2)
    while t < minutes:
        h = rng.choice(bearish if rng.random() < 0.5 else other)
        usual.append(scored(f"usual-{len(usual)}-{h.index}", h, T0 + timedelta(minutes=t), topic=topic))
        t += rng.expovariate(0.2)
    chosen = rng.sample(bearish, 22) + rng.sample(other, 8)
    rng.shuffle(chosen)
    burst = [
        scored(f"surge-{i}-{h.index}", h, burst_start + timedelta(seconds=20 * i), topic=topic)
        for i, h in enumerate(chosen)
    ]
    return in_event_order(market, usual, burst), burst


def issue_ticker_burst(*, ticker: str, start: datetime, seed: int = 1) -> list[ScoredItem]:
    """The issue's second case: a ticker never seen before gets 12 stories in 10 minutes, 9
    of them bearish: real headlines that mention it by cashtag, on random topics."""
    c = corpus()
    rng = random.Random(seed)
    mine = [h for h in c.headlines if ticker in h.tickers]
    chosen = rng.sample([h for h in mine if h.sentiment == "bearish"], 9)
    chosen += rng.sample([h for h in mine if h.sentiment != "bearish"], 3)
    rng.shuffle(chosen)
    return [
        scored(
            f"newticker-{i}-{h.index}",
            h,
            start + timedelta(seconds=50 * i),
            topic=rng.choices(TOPIC_LABELS, weights=c.topic_weights)[0],
        )
        for i, h in enumerate(chosen)
    ]


def without_ticker(items: Sequence[ScoredItem], ticker: str) -> list[ScoredItem]:
    """The stream with every story that mentions `ticker` left out: it was never seen."""
    return [i for i in items if ticker not in i.tickers]


def cycle_rate_per_min(at: datetime) -> float:
    """News volume by time of week (UTC): weekdays 0.4 stories/min at night (21-07 h),
    1.5/min in the day and 4.5/min (x3) from the US open 13:30 to 15:00; weekends 0.3/min.
    The same cycle as benchmarks/alert_calibration.py."""
    if at.weekday() >= 5:
        return 0.3
    hour = at.hour + at.minute / 60
    if 13.5 <= hour < 15.0:
        return 4.5
    return 1.5 if 7.0 <= hour < 21.0 else 0.4


def calm_cycle(*, days: float, start: datetime, seed: int) -> list[tuple[Headline, datetime, str]]:
    """Random seed headlines at the times of a Poisson process following the weekly cycle
    (by thinning), each with a topic drawn from the topic file's distribution; the caller
    labels them."""
    c = corpus()
    rng = random.Random(seed)
    out: list[tuple[Headline, datetime, str]] = []
    t = 0.0
    while True:
        t += rng.expovariate(4.5)
        if t >= days * 1440:
            return out
        at = start + timedelta(minutes=t)
        if rng.random() * 4.5 < cycle_rate_per_min(at):
            h = c.headlines[rng.randrange(len(c.headlines))]
            out.append((h, at, rng.choices(TOPIC_LABELS, weights=c.topic_weights)[0]))
