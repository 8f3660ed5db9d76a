"""Syndicated copies of real headlines, and storing a stream the way the scorer does with
story clustering on (its own `store_batch` and `StoryClustering`), for the story tests."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from services.ingest.producer import NewsProducer
from services.scorer.app import scored_message
from services.scorer.sink import RetryPolicy, store_batch
from services.storage import ScoredItem
from services.stories import StoryClustering, normalise_headline

from .alert_streams import Headline, batches, corpus, scored

CLUSTERING = StoryClustering(threshold=0.5, window=timedelta(hours=24))
NO_WAIT = RetryPolicy(initial=0.01, max_delay=0.01, max_elapsed=0.0)

PREFIXES = ("", "UPDATE 1-", "BREAKING: ", "RPT-", "", "EXCLUSIVE-", "WRAPUP 2-", "")
SUFFIXES = (" - Reuters", "", " | Bloomberg", " https://t.co/Zx81kq", " (AP)", " via @WSJ", "", " - CNBC")


def retitled(text: str, feed: int) -> str:
    """How feed number `feed` re-titles a wire headline: a prefix, a source tag or link,
    sometimes upper case."""
    out = PREFIXES[feed % len(PREFIXES)] + text + SUFFIXES[feed % len(SUFFIXES)]
    return out.upper() if feed % 3 == 2 else out


def wire_headline(seed: int, sentiment: str = "bearish") -> Headline:
    """A real headline of `sentiment`, long enough to be a wire story, without cashtags."""
    pool = [
        h
        for h in corpus().by_sentiment(sentiment)
        if not h.tickers and len(normalise_headline(h.text).split()) >= 7 and "http" not in h.text
    ]
    return random.Random(seed).choice(pool)


def syndicated(
    headline: Headline, *, feeds: int, start: datetime, minutes: float, topic: str, prefix: str = "syn"
) -> list[ScoredItem]:
    """One story carried by `feeds` outlets over `minutes`, each copy re-titled and from its
    own source."""
    return [
        replace(
            scored(
                f"{prefix}-{i}-{headline.index}",
                headline,
                start + timedelta(minutes=minutes * i / feeds),
                topic=topic,
            ),
            headline=retitled(headline.text, i),
            source=f"feed-{i}",
        )
        for i in range(feeds)
    ]


def store_with_stories(engine: Engine, items: Sequence[ScoredItem]) -> None:
    """The scorer's storing step with clustering on."""
    store_batch(lambda: Session(engine), items, retry=NO_WAIT, stories=CLUSTERING)


def play_with_stories(
    engine: Engine, bootstrap: str, topic: str, items: Sequence[ScoredItem], *, batch: int = 30
) -> int:
    """`alert_streams.play` with story clustering: per batch, store and commit, then produce."""
    sent = 0
    with NewsProducer(bootstrap, topic=topic, client_id="test-scorer") as producer:
        for chunk in batches(items, batch):
            store_with_stories(engine, chunk)
            for item in chunk:
                producer.send_raw(scored_message(item), item.event_id)
            producer.flush()
            sent += len(chunk)
    return sent
