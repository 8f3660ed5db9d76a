"""The chaos run's input, decided before anything runs: which real headlines, when (event
time), which poison where, and the one bearish burst, with the alerts the pure detector
expects from the model's own labels.

Pure apart from reading the packaged seed data: the labels come in from the caller (the
model that the workers serve, run once in-process), so this module needs no torch.

The burst is a new ticker (one no calm headline mentions) that receives `burst_size` real
headlines the model labels bearish, all inside one minute: the alert detector's surge test
sees a scope that usually has none. All in one minute so that the first window judged over
it already holds all of it: no later window is stronger, so there is no escalation and the
alert notifies once (its resolution comes only after `resolve_after` minutes of event time
without a detection, which the stream never reaches: the burst sits near its end).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bert_core import normalize_text, packaged_seed_data
from services.alerting import Action, aggregate, apply, bucket_start, detect
from services.schemas import extract_tickers
from services.storage import ScoredItem

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
BURST_TICKER = "CHAOS"
LATENESS = timedelta(seconds=120)  # FINSENT_ALERT_ALLOWED_LATENESS_SECONDS's default
# Words the tiny test model learned as bearish (tests/conftest.py SENTIMENT_KEYWORDS[0]); the
# burst's candidates contain one, and the model's own label decides.
BEARISH_WORDS = ("plunge", "plunges", "misses", "falls", "slumps", "tumbles", "drops", "loss", "weak")
POISON_KINDS = ("bad_json", "wrong_types", "oversize", "deep_nesting", "invalid_utf8", "future_date")
EXPECTED_ERROR_TYPE = {  # the DLQ's error-type header each kind must get
    "bad_json": "invalid_json",
    "wrong_types": "wrong_type",
    "oversize": "too_large",
    "deep_nesting": "invalid_json",
    "invalid_utf8": "invalid_utf8",
    "future_date": "future_published_at",
}
OVERSIZE_BYTES = 1_050_000  # over the scorer's 1,000,000-byte limit
NESTING_DEPTH = 100_000


@dataclass(frozen=True, slots=True)
class Label:
    """What the model says about one headline (the worker stores the same)."""

    topic: str
    sentiment: str
    p_bearish: float
    p_neutral: float
    p_bullish: float


Labeller = Callable[[Sequence[str]], list[Label]]


@dataclass(frozen=True, slots=True)
class Story:
    event_id: str
    headline: str
    published_at: datetime
    tickers: tuple[str, ...] = ()  # explicit tickers (the burst); empty = the worker extracts them

    def payload(self) -> bytes:
        item: dict[str, Any] = {
            "id": self.event_id,
            "headline": self.headline,
            "source": "chaos",
            "published_at": self.published_at.isoformat(),
        }
        if self.tickers:
            item["tickers"] = list(self.tickers)
        return json.dumps(item).encode()


@dataclass(frozen=True, slots=True)
class Poison:
    marker: str  # at the start of the value, so even a truncated dead letter names it
    kind: str
    payload: bytes


@dataclass
class Design:
    stories: list[Story]  # valid items, in production (= event-time) order
    poison: dict[int, Poison]  # position in the production order -> poison sent before that story
    burst_ids: list[str]
    expected: list[Action]  # alert actions the pure detector expects on the model's labels
    seed: int
    span_minutes: float
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def expected_alerts(self) -> list[tuple[str, str]]:
        return sorted({(a.alert.scope, a.alert.key) for a in self.expected if a.kind == "open"})

    @property
    def expected_notifications(self) -> list[str]:
        return [a.kind for a in self.expected if a.notify]


def seed_headlines() -> list[str]:
    """Every distinct packaged seed headline that is not empty once normalised."""
    texts: list[str] = []
    for path in packaged_seed_data().values():
        with path.open(newline="", encoding="utf-8") as fh:
            texts.extend(row["text"] for row in csv.DictReader(fh))
    return [t for t in dict.fromkeys(texts) if normalize_text(t)]


def poison_payload(kind: str, marker: str, *, now: datetime) -> bytes:
    head = f'{{"id": "{marker}", '
    if kind == "bad_json":
        return (head + '"headline": "unterminated').encode()
    if kind == "wrong_types":
        return json.dumps({"id": marker, "headline": 12345, "tickers": "AAPL"}).encode()
    if kind == "oversize":
        body = "x" * OVERSIZE_BYTES
        return (head + f'"headline": "a very long report", "body": "{body}"}}').encode()
    if kind == "deep_nesting":
        return (
            head + '"headline": "nested", "deep": ' + "[" * NESTING_DEPTH + "]" * NESTING_DEPTH + "}"
        ).encode()
    if kind == "invalid_utf8":
        return (head + '"headline": "caf').encode() + b"\xc3\x28\xff" + b'"}'
    if kind == "future_date":
        future = (now + timedelta(days=3650)).isoformat()
        return json.dumps(
            {"id": marker, "headline": "a story from the future", "published_at": future}
        ).encode()
    raise ValueError(f"unknown poison kind {kind!r}")


def scored_item(story: Story, label: Label, tickers: Sequence[str]) -> ScoredItem:
    return ScoredItem(
        event_id=story.event_id,
        headline=story.headline,
        published_at=story.published_at,
        received_at=story.published_at,
        model_version="design",
        topic=label.topic,
        topic_score=1.0,
        sentiment=label.sentiment,
        p_bearish=label.p_bearish,
        p_neutral=label.p_neutral,
        p_bullish=label.p_bullish,
        sentiment_score=label.p_bullish - label.p_bearish,
        scored_at=story.published_at,
        source="chaos",
        tickers=tuple(tickers),
    )


def expected_actions(items: Sequence[ScoredItem]) -> list[Action]:
    """The pure detector and lifecycle (default settings) over the whole stream, up to where
    the alerter's watermark ends (the newest story minus the allowed lateness)."""
    until = bucket_start(max(i.published_at for i in items) - LATENESS)
    buckets = [b for b in aggregate(items).values() if b.start < until]
    return apply(None, detect(buckets, until=until).detections, now=until).actions


def make_design(
    n_items: int,
    labeller: Labeller,
    *,
    seed: int = 0,
    poison_share: float = 0.01,
    burst_size: int = 8,
    tries: int = 12,
    now: datetime | None = None,
) -> Design:
    """A stream of `n_items` valid stories (the burst included) with exactly one expected
    alert, the burst's, notified once; tries shuffles `seed`, `seed+1`, … until one has it."""
    now = now or datetime.now(UTC)
    texts = seed_headlines()
    burst_candidates = [
        t
        for t in texts
        if not extract_tickers(t) and any(w in normalize_text(t).lower().split() for w in BEARISH_WORDS)
    ]
    candidate_labels = labeller(burst_candidates)
    bearish_pool = [
        t for t, lab in zip(burst_candidates, candidate_labels, strict=True) if lab.p_bearish >= 0.8
    ]
    if len(bearish_pool) < burst_size:
        raise ValueError(f"the model labels only {len(bearish_pool)} burst candidates bearish")
    calm_pool = [t for t in texts if t not in set(bearish_pool) and BURST_TICKER not in extract_tickers(t)]
    n_calm = n_items - burst_size
    span = max(120.0, n_calm / 20.0)  # minutes of event time: ~20 stories a minute, ≥ 2 h
    failures: list[str] = []
    labels_cache: dict[str, Label] = {}
    chosen = random.Random(seed).sample(calm_pool, n_calm)  # labelled once; each try reorders them
    labels_cache.update(zip(chosen, labeller(chosen), strict=True))
    labels_cache.update(zip(burst_candidates, candidate_labels, strict=True))
    for attempt in range(tries):
        s = seed + attempt
        rng = random.Random(s)
        calm_texts = rng.sample(chosen, n_calm)
        burst_texts = rng.sample(bearish_pool, burst_size)
        burst_minute = T0 + timedelta(minutes=int(span) - 12)
        calm = [
            Story(f"chaos-{i:05d}", t, T0 + timedelta(minutes=span * i / n_calm + rng.random() * 0.01))
            for i, t in enumerate(calm_texts)
        ]
        burst = [
            Story(f"burst-{j:02d}", t, burst_minute + timedelta(seconds=5 + 6 * j), (BURST_TICKER,))
            for j, t in enumerate(burst_texts)
        ]
        stories = sorted(calm + burst, key=lambda st: st.published_at)
        items = [
            scored_item(st, labels_cache[st.headline], st.tickers or extract_tickers(st.headline))
            for st in stories
        ]
        actions = expected_actions(items)
        opened = sorted({(a.alert.scope, a.alert.key) for a in actions if a.kind == "open"})
        notified = [a.kind for a in actions if a.notify]
        if opened == [("ticker", BURST_TICKER)] and notified == ["open"]:
            # renumber so that production order = event-time order = id order
            stories = [
                Story(f"chaos-{i:05d}", st.headline, st.published_at, st.tickers)
                for i, st in enumerate(stories)
            ]
            burst_ids = [st.event_id for st in stories if st.tickers]
            n_poison = round(n_items * poison_share)
            positions = sorted(random.Random(s).sample(range(1, len(stories)), n_poison))
            poison = {
                pos: Poison(marker, kind, poison_payload(kind, marker, now=now))
                for k, pos in enumerate(positions)
                for kind in [POISON_KINDS[k % len(POISON_KINDS)]]
                for marker in [f"poison-{k:04d}-{kind}"]
            }
            return Design(
                stories,
                poison,
                burst_ids,
                actions,
                s,
                span,
                notes={"tries": attempt + 1, "rejected": failures, "bearish_pool": len(bearish_pool)},
            )
        failures.append(f"seed {s}: alerts {opened}, notifications {notified}")
    raise ValueError(f"no stream with exactly the burst's alert in {tries} tries: {failures}")
