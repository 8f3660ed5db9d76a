"""The surge (count) test and the market's rate test of the alert detector: the count
model's p-values, the prior of new scopes, immunity to the volume cycle, the evidence, and
the versioned state."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from services.alerting import (
    Detection,
    DetectorConfig,
    DetectorState,
    aggregate,
    bearish_event_ids,
    betabinom_sf,
    detect,
    nbinom_sf,
)

from .alert_streams import T0, Item, burst, calm, end_of, item

MIN = timedelta(minutes=1)
DEFAULT = DetectorConfig()


def run(items: list[Item], config: DetectorConfig = DEFAULT) -> list[Detection]:
    return detect(
        aggregate(items).values(), until=end_of(items), config=config, event_ids=bearish_event_ids(items)
    ).detections


def mixed(
    n: int,
    start: datetime,
    minutes: float,
    *,
    topic: str,
    bearish: int,
    prefix: str,
    tickers: tuple[str, ...] = (),
) -> list[Item]:
    """`n` stories evenly over `minutes`, `bearish` of them bearish (in a seeded order)."""
    kinds = ["bearish"] * bearish + ["neutral"] * (n - bearish)
    random.Random(prefix).shuffle(kinds)
    return [
        item(
            f"{prefix}-{i}",
            start + timedelta(minutes=minutes * i / n),
            topic=topic,
            sentiment=s,
            tickers=tickers,
        )
        for i, s in enumerate(kinds)
    ]


# --- the count model ----------------------------------------------------------------------


def test_nbinom_sf_against_closed_forms() -> None:
    # r = 1 is the geometric distribution: P(X >= k) = (1 - p)^k.
    for k, p in [(1, 0.5), (3, 0.2), (12, 0.9), (40, 0.3)]:
        assert nbinom_sf(k, 1.0, p) == pytest.approx((1 - p) ** k, rel=1e-9)
    # Integer r: one minus the lower sum of the pmf C(j + r - 1, j) p^r (1-p)^j.
    for k, r, p in [(4, 3, 0.4), (9, 5, 0.6), (2, 2, 0.05)]:
        below = sum(math.comb(j + r - 1, j) * p**r * (1 - p) ** j for j in range(k))
        assert nbinom_sf(k, float(r), p) == pytest.approx(1 - below, rel=1e-9)
    # A huge shape is a Poisson: mean 2, P(X >= 6) = 1 - sum_{j<6} e^-2 2^j / j!.
    shape = 1e7
    poisson = 1 - sum(math.exp(-2) * 2**j / math.factorial(j) for j in range(6))
    assert nbinom_sf(6, shape, shape / (shape + 2.0)) == pytest.approx(poisson, rel=1e-5)
    # Far tail keeps its precision (summed upwards, not 1 - cdf).
    assert 0 < nbinom_sf(60, 1.0, 0.9) == pytest.approx(0.1**60, rel=1e-9)
    assert nbinom_sf(0, 2.0, 0.5) == 1.0 and nbinom_sf(3, 2.0, 1.0) == 0.0
    with pytest.raises(ValueError):
        nbinom_sf(3, 0.0, 0.5)


def test_nbinom_sf_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for k, r, p in [(5, 0.5, 0.3), (10, 20.0, 0.7), (3, 2.5, 0.01), (25, 7.0, 0.8)]:
        assert nbinom_sf(k, r, p) == pytest.approx(stats.nbinom.sf(k - 1, r, p), rel=1e-7)


def test_betabinom_sf_uniform_prior_known_values() -> None:
    # Beta(1, 1): every count 0..n is equally likely, P(X >= k) = (n - k + 1) / (n + 1).
    for k, n in [(1, 4), (3, 10), (10, 10)]:
        assert betabinom_sf(k, n, 1.0, 1.0) == pytest.approx((n - k + 1) / (n + 1), rel=1e-12)


# --- the cases ----------------------------------------------------------------------


def test_a_never_seen_ticker_with_a_burst_fires_within_three_minutes() -> None:
    start = T0 + timedelta(minutes=150)
    items = calm(minutes=200, seed=21) + mixed(
        12, start, 10, topic="Markets", bearish=9, prefix="new", tickers=("NEWCO",)
    )
    hits = [d for d in run(items) if d.key == "NEWCO"]
    assert hits, "a never-seen ticker with 9 bearish stories in 10 minutes must alert"
    first = hits[0]
    assert first.window_end - start <= 3 * MIN
    assert "surge" in first.tests and first.usual_bearish < 0.1 and first.rate_ratio > 30
    assert first.p_surge <= DEFAULT.p_warning < first.p_share  # the share test alone missed it


def test_the_same_three_stories_on_a_busy_ticker_are_not_a_surge() -> None:
    # JPM gets a bearish story every ~5 minutes all day; three in two minutes is ordinary.
    start = T0 + timedelta(minutes=150)
    rng = random.Random(5)
    usual = [
        item(
            f"jpm-{i}",
            T0 + timedelta(minutes=m),
            topic="Banks",
            sentiment=rng.choice(("bearish", "neutral")),
            tickers=("JPM",),
        )
        for i, m in enumerate(range(0, 200, 3))
    ]
    extra = burst(size=3, start=start, minutes=2, topic="Banks", tickers=("JPM",), prefix="x")
    assert not [d for d in run(calm(minutes=200, seed=21) + usual + extra) if d.key == "JPM"]
    new = burst(size=3, start=start, minutes=2, topic="Banks", tickers=("NEWCO",), prefix="x")
    assert [d for d in run(calm(minutes=200, seed=21) + usual + new) if d.key == "NEWCO"]


def test_a_flood_on_a_usually_bearish_topic_fires_the_surge_test_only() -> None:
    # "Energy / Oil" usually: 2 stories per 10 minutes, half bearish. Then 30 in 10
    # minutes, 22 bearish: the share barely moves, the count is 15x.
    topic = "Energy / Oil"
    base = [s for s in calm(minutes=200, seed=22) if s.topic != topic]
    usual = mixed(40, T0, 200, topic=topic, bearish=20, prefix="oil")
    start = T0 + timedelta(minutes=160)
    flood = mixed(30, start, 10, topic=topic, bearish=22, prefix="flood")
    hits = [d for d in run(base + usual + flood) if d.key == topic]
    assert hits and hits[0].window_end - start <= 3 * MIN
    assert all(
        d.scope == "topic" for d in run(base + usual + flood) if d.window_end > start
    )  # not the market
    assert "surge" in hits[0].tests
    peak = max(hits, key=lambda d: d.bearish)
    assert peak.bearish >= 20 and 0.5 <= peak.usual_bearish <= 3 and peak.rate_ratio > 7
    # The share test alone (the detector before the surge test) does not fire on it.
    share_only = replace(DEFAULT, surge_min_bearish=10_000)
    assert not [d for d in run(base + usual + flood, share_only) if d.key == topic]


def test_the_volume_cycle_fires_nothing() -> None:
    # quiet night, a day, the open at three times the day's rate, a quiet evening
    parts = [(120, 0.4), (120, 1.5), (90, 4.5), (120, 1.5), (120, 0.4)]
    items: list[Item] = []
    at = T0
    for n, (minutes, rate) in enumerate(parts):
        items += calm(minutes=minutes, seed=30 + n, rate_per_min=rate, start=at, prefix=f"p{n}")
        at += timedelta(minutes=minutes)
    assert run(items) == []


def test_evidence_names_the_tests_and_carries_counts_ratio_and_both_p_values() -> None:
    start = T0 + timedelta(minutes=150)
    items = calm(minutes=200, seed=23) + burst(size=20, start=start, minutes=6, prefix="b")
    d = next(d for d in run(items) if d.key == "Energy / Oil")
    ev = json.loads(json.dumps(d.to_dict()))
    assert set(ev["tests"]) <= {"share", "surge"} and ev["tests"]
    assert ev["p_value"] == min(ev["p_share"], ev["p_surge"])
    for name in ev["tests"]:
        assert ev[f"p_{name}"] <= DEFAULT.p_warning
    assert ev["bearish"] >= DEFAULT.surge_min_bearish and ev["usual_bearish"] > 0
    assert ev["rate_ratio"] == pytest.approx(ev["bearish"] / ev["usual_bearish"])
    assert ev["surge_minutes"] in (3.0, 10.0)


# --- the market's rate test -----------------------------------------------------------------


def days_of_cycle(days: int, seed: int) -> list[Item]:
    """Weekdays with the cycle: night 0.4/min, day 1.5/min, the open 4.5/min."""
    items: list[Item] = []
    for day in range(days):
        at = T0.replace(hour=0) + timedelta(days=day)
        for n, (hours, rate) in enumerate([(7, 0.4), (6.5, 1.5), (1.5, 4.5), (6, 1.5), (3, 0.4)]):
            minutes = int(hours * 60)
            items += calm(
                minutes=minutes,
                seed=seed * 100 + day * 10 + n,
                rate_per_min=rate,
                start=at,
                prefix=f"d{day}-{n}",
            )
            at += timedelta(minutes=minutes)
    return items


def test_the_market_rate_test_learns_the_hour_and_catches_a_sell_off() -> None:
    items = days_of_cycle(3, seed=4)
    # three days of the cycle, the open included: the market never fires (one topic does once,
    # three bearish Fed stories in ten minutes at 1 a.m. where 0.08 are usual: p = 8e-6)
    assert [d.key for d in run(items)] in ([], ["Fed / Central Banks"])
    assert not [d for d in run(items) if d.scope == "market"]
    # Day 4, 10:00 UTC: bearish news on every topic, four times the hour's usual bearish count.
    start = T0 + timedelta(days=3, hours=10)
    topics = ["Markets", "Macro", "Company | Product News", "Stock Commentary", "Energy / Oil", "Banks"]
    sell_off = [
        item(
            f"sell-{i}",
            start + timedelta(minutes=10 * i / 24),
            topic=topics[i % len(topics)],
            sentiment="bearish",
        )
        for i in range(24)
    ]
    tail = calm(minutes=60, seed=99, rate_per_min=1.5, start=start - timedelta(minutes=20), prefix="tail")
    hits = [d for d in run(items + tail + sell_off) if d.scope == "market" and d.window_end > start]
    assert any("surge" in d.tests for d in hits)
    assert min(d.window_end for d in hits) - start <= 6 * MIN


def test_incremental_calls_equal_one_call_across_days() -> None:
    items = days_of_cycle(2, seed=6) + burst(size=15, start=T0 + timedelta(days=1, hours=14), prefix="b")
    buckets = aggregate(items)
    until = end_of(items)
    whole = detect(buckets.values(), until=until)
    state: DetectorState | None = None
    got: list[Detection] = []
    cut = T0.replace(hour=0)  # the first story's bucket
    rng = random.Random(3)
    while cut < until:
        nxt = min(until, cut + rng.randint(1, 400) * MIN)
        step = detect([b for b in buckets.values() if cut <= b.start < nxt], until=nxt, state=state)
        got.extend(step.detections)
        state = DetectorState.from_dict(json.loads(json.dumps(step.state.to_dict())))
        cut = nxt
    assert whole.detections and got == whole.detections
    assert state is not None and state.to_dict() == whole.state.to_dict()
    assert whole.state.market_rate.until is not None and sum(whole.state.market_rate.buckets) > 0


# --- state versions -------------------------------------------------------------------------


def test_a_version_1_state_is_read_and_a_future_one_refused() -> None:
    items = calm(minutes=120, seed=24)
    state = detect(aggregate(items).values(), until=end_of(items)).state.to_dict()
    assert state["version"] == 2
    old = {k: v for k, v in state.items() if k not in ("version", "market_rate")}  # as stored before
    read = DetectorState.from_dict(old)
    assert read.scopes == DetectorState.from_dict(state).scopes
    assert read.market_rate.until is None  # the hour-of-week profile starts empty
    more = calm(minutes=30, seed=25, start=end_of(items))
    detect(aggregate(more).values(), until=end_of(more), state=read)  # and it carries on
    with pytest.raises(ValueError, match="version 3"):
        DetectorState.from_dict({**state, "version": 3})


def test_surge_settings_are_validated() -> None:
    for bad in (
        {"surge_min_bearish": 0},
        {"surge_short_buckets": 0},
        {"ticker_prior_rate": 0.0},
        {"surge_prior_stories": -1.0},
        {"rate_dispersion": 0.0},
        {"rate_half_life": timedelta(seconds=1)},
    ):
        with pytest.raises(ValueError):
            DetectorConfig(**bad)  # type: ignore[arg-type]
