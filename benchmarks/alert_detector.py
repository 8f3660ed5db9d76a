"""False alarms and detection delay of the negative-spike detector, and how they move with
the thresholds.

Usage: python benchmarks/alert_detector.py [--calm-days 7] [--bursts 12] [--seed 7]

Streams are simulated from real headlines (the packaged seed data, bert_core/seed_data): each
item is a headline
drawn at random from sentiment_train.csv with its true sentiment label (so sentiments
follow that file's distribution: 15 % bearish, 20 % bullish, 65 % neutral) and its
cashtag tickers, plus a topic drawn from topic_train.csv's label distribution. The two
files label different texts, so an item's topic is not its headline's topic; the
detector only sees labels and counts, so that does not matter here. Arrivals are a
Poisson process at 3 items/min market-wide on average, with a daily cycle (1.2/min at
night to 4.8/min at the 15:00 UTC peak). Event time is the only clock.

- calm, independent: items drawn independently (the issue's calm stream).
- calm, clustered: the same rate, but stories come in clusters (1 + Geometric extra
  items, mean cluster size 1.3, spread over a few minutes) sharing topic, sentiment and
  tickers, as when several outlets carry one story. A harsher test of false alarms:
  some bearish clusters of 5+ headlines are, arguably, real (small) events.
- bursts: the independent calm stream plus, every `--gap-hours`, `size` extra bearish
  headlines spread evenly over 5-10 minutes on one topic (topic drawn uniformly) or one
  ticker (one of the 10 most-mentioned); sizes 5, 10, 20, 40 (topic) and 5, 10, 20
  (ticker).

Measured per setting (window W, p-value threshold, minimum bearish count):
false alarms per day = alerts opened (after the lifecycle's merging and cooldown) on the
calm streams, all scopes combined, after a 6-hour burn-in; detection delay = first
detection of the burst's scope minus the burst's first headline (windows close on the
minute, so delays are whole minutes), missed if none within 30 minutes.

The detector runs once per stream, window length and minimum count with the loosest
p-value threshold; each setting then keeps the detections that pass its own. That is
exact: the detector's state depends on `p_learn` and the minimum count, not on
`p_warning`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from result_file import describe, finish, machine, result_path, write_json
from seed_headlines import SENTIMENT_NAMES, Item, load_seed_headlines

from bert_core import TOPIC_LABELS
from services.alerting import (
    Detection,
    DetectorConfig,
    LifecycleConfig,
    aggregate,
    apply,
    bearish_event_ids,
    detect,
)

SCORE = {"bearish": -1.0, "neutral": 0.0, "bullish": 1.0}  # true labels: p = one-hot
T0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday, 00:00 UTC
BURN_IN = timedelta(hours=6)
HORIZON = timedelta(minutes=30)
TOPIC_SIZES = (5, 10, 20, 40)
TICKER_SIZES = (5, 10, 20)
WINDOWS = (5, 10)
P_THRESHOLDS = (1e-3, 1e-4, 1e-5, 1e-6)
MIN_BEARISH = (3, 5, 8)
DEFAULT = DetectorConfig()


@dataclass(frozen=True, slots=True)
class Burst:
    scope: str  # "topic" | "ticker"
    key: str
    size: int
    start: datetime


class Headlines:
    def __init__(self) -> None:
        seed = load_seed_headlines()
        self.texts = seed.texts
        self.sentiments = seed.truth
        self.tickers = seed.tickers
        self.bearish = [i for i, s in enumerate(self.sentiments) if s == "bearish"]
        self.by_sentiment = {
            s: [i for i, x in enumerate(self.sentiments) if x == s] for s in SENTIMENT_NAMES.values()
        }
        self.topic_p = seed.topic_p
        self.top_tickers = [t for t, _ in seed.ticker_mentions().most_common(10)]


def rate_per_min(minutes: np.ndarray, mean: float = 3.0, amplitude: float = 0.6) -> np.ndarray:
    hours = (minutes / 60.0) % 24.0
    return mean * (1.0 + amplitude * np.cos(2 * np.pi * (hours - 15.0) / 24.0))


def arrivals(rng: np.random.Generator, minutes: float, mean: float) -> np.ndarray:
    """Arrival times (minutes) of a Poisson process with the daily cycle, by thinning."""
    peak = mean * 1.6
    n = rng.poisson(peak * minutes)
    t = np.sort(rng.uniform(0.0, minutes, n))
    return t[rng.uniform(0.0, peak, n) < rate_per_min(t, mean)]


def calm_stream(
    h: Headlines, rng: np.random.Generator, days: float, *, clustered: bool, prefix: str
) -> list[Item]:
    minutes = days * 1440.0
    extra_mean = 0.3 if clustered else 0.0
    starts = arrivals(rng, minutes, 3.0 / (1.0 + extra_mean))
    items: list[Item] = []
    for n, t0 in enumerate(starts):
        first = int(rng.integers(len(h.texts)))
        sentiment = h.sentiments[first]
        topic = TOPIC_LABELS[int(rng.choice(len(TOPIC_LABELS), p=h.topic_p))]
        tickers = h.tickers[first]
        extra = int(rng.geometric(1.0 / (1.0 + extra_mean))) - 1 if clustered else 0
        offsets = [0.0, *np.cumsum(rng.exponential(1.0, extra)).tolist()]
        pool = h.by_sentiment[sentiment]
        for j, dt in enumerate(offsets):
            text = first if j == 0 else pool[int(rng.integers(len(pool)))]
            items.append(
                Item(
                    event_id=f"{prefix}-{n}-{j}-{text}",
                    published_at=T0 + timedelta(minutes=float(t0 + dt)),
                    topic=topic,
                    sentiment=sentiment,
                    sentiment_score=SCORE[sentiment],
                    tickers=tickers,
                )
            )
    return [i for i in items if i.published_at < T0 + timedelta(minutes=minutes)]


def burst_stream(
    h: Headlines, rng: np.random.Generator, n_per_size: int, gap_hours: float
) -> tuple[list[Item], list[Burst], float]:
    plan = [("topic", s) for s in TOPIC_SIZES for _ in range(n_per_size)]
    plan += [("ticker", s) for s in TICKER_SIZES for _ in range(n_per_size)]
    order = rng.permutation(len(plan))
    days = (len(plan) + 2) * gap_hours / 24.0
    items = calm_stream(h, rng, days, clustered=False, prefix="b")
    bursts: list[Burst] = []
    for k, idx in enumerate(order):
        scope, size = plan[int(idx)]
        start = T0 + timedelta(hours=gap_hours * (k + 1)) + timedelta(minutes=float(rng.uniform(0, 60)))
        span = float(rng.uniform(5.0, 10.0))
        if scope == "topic":
            key = TOPIC_LABELS[int(rng.integers(len(TOPIC_LABELS)))]
        else:
            key = h.top_tickers[int(rng.integers(len(h.top_tickers)))]
        for j in range(size):
            text = h.bearish[int(rng.integers(len(h.bearish)))]
            topic = key if scope == "topic" else TOPIC_LABELS[int(rng.choice(len(TOPIC_LABELS), p=h.topic_p))]
            tickers = h.tickers[text] if scope == "topic" else (key,)
            items.append(
                Item(
                    event_id=f"burst-{k}-{j}-{text}",
                    published_at=start + timedelta(minutes=span * j / size),
                    topic=topic,
                    sentiment="bearish",
                    sentiment_score=-1.0,
                    tickers=tickers,
                )
            )
        bursts.append(Burst(scope=scope, key=key, size=size, start=start))
    return items, sorted(bursts, key=lambda b: b.start), days


def run_detector(
    items: list[Item], days: float, window: int, floor: int, base: DetectorConfig
) -> list[Detection]:
    permissive = replace(base, window_buckets=window, p_warning=max(P_THRESHOLDS), min_bearish=floor)
    until = T0 + timedelta(days=days)
    run = detect(
        aggregate(items).values(), until=until, config=permissive, event_ids=bearish_event_ids(items)
    )
    return run.detections


def passes(d: Detection, p: float, floor: int) -> bool:
    return d.p_value <= p and d.bearish >= floor


def alerts_opened(detections: list[Detection], until: datetime) -> list[Detection]:
    run = apply(None, detections, now=until, config=LifecycleConfig())
    return [a.detection for a in run.actions if a.kind == "open" and a.detection is not None]


def false_alarms(
    detections: list[Detection], days: float, p: float, floor: int
) -> tuple[float, Counter[str]]:
    kept = [d for d in detections if passes(d, p, floor)]
    opened = [d for d in alerts_opened(kept, T0 + timedelta(days=days)) if d.window_end >= T0 + BURN_IN]
    per_day = len(opened) / (days - BURN_IN / timedelta(days=1))
    return per_day, Counter(d.scope for d in opened)


def burst_outcomes(
    detections: list[Detection], bursts: list[Burst], p: float, floor: int
) -> list[dict[str, object]]:
    kept = [d for d in detections if passes(d, p, floor)]
    out = []
    for b in bursts:
        stop = b.start + HORIZON
        hits = [d for d in kept if d.scope == b.scope and d.key == b.key and b.start < d.window_end <= stop]
        market = any(d.scope == "market" and b.start < d.window_end <= stop for d in kept)
        others = {
            (d.scope, d.key)
            for d in kept
            if d.scope == b.scope and d.key != b.key and b.start < d.window_end <= stop
        }
        delay = (min(d.window_end for d in hits) - b.start) / timedelta(minutes=1) if hits else None
        out.append(
            {
                "scope": b.scope,
                "key": b.key,
                "size": b.size,
                "delay_min": delay,
                "severity": max((d.severity for d in hits), key=("warning", "high", "critical").index)
                if hits
                else None,
                "market_fired": market,
                "other_same_scope_fired": len(others),
            }
        )
    return out


def summarise(outcomes: list[dict[str, object]], scope: str, size: int) -> dict[str, object]:
    rows = [o for o in outcomes if o["scope"] == scope and o["size"] == size]
    delays = [float(o["delay_min"]) for o in rows if o["delay_min"] is not None]  # type: ignore[arg-type]
    return {
        "bursts": len(rows),
        "detected": len(delays),
        "median_delay_min": statistics.median(delays) if delays else None,
        "max_delay_min": max(delays) if delays else None,
        "market_fired": sum(bool(o["market_fired"]) for o in rows),
        "other_same_scope_fired": sum(int(o["other_same_scope_fired"]) for o in rows),  # type: ignore[call-overload]
    }


def fmt_delay(s: dict[str, object]) -> str:
    if not s["detected"]:
        return f"- (0/{s['bursts']})"
    return f"{s['median_delay_min']:.1f} ({s['detected']}/{s['bursts']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calm-days", type=float, default=10.0)
    parser.add_argument("--bursts", type=int, default=20, help="bursts per (scope, size)")
    parser.add_argument("--gap-hours", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=result_path("alert_detector"))
    parser.add_argument("--markdown", type=Path, default=result_path("alert_detector", ".md"))
    parser.add_argument("--prior-items", type=float, default=DEFAULT.prior_items)
    parser.add_argument("--half-life-h", type=float, default=DEFAULT.baseline_half_life / timedelta(hours=1))
    parser.add_argument("--p-learn", type=float, default=DEFAULT.p_learn)
    args = parser.parse_args()
    info = machine()
    base = replace(
        DEFAULT,
        prior_items=args.prior_items,
        baseline_half_life=timedelta(hours=args.half_life_h),
        p_learn=args.p_learn,
    )
    started = time.perf_counter()
    h = Headlines()
    rng = np.random.default_rng(args.seed)
    days = args.calm_days + BURN_IN / timedelta(days=1)
    calm = {
        "independent": calm_stream(h, rng, days, clustered=False, prefix="i"),
        "clustered": calm_stream(h, rng, days, clustered=True, prefix="c"),
    }
    b_items, bursts, b_days = burst_stream(h, rng, args.bursts, args.gap_hours)
    print(
        f"streams: calm {days:.2f} days x2 ({len(calm['independent'])} / {len(calm['clustered'])} items), "
        f"bursts {b_days:.1f} days ({len(b_items)} items, {len(bursts)} bursts)"
    )

    rows = []
    detail: dict[str, object] = {}
    for window in WINDOWS:
        for floor in MIN_BEARISH:
            calm_dets = {name: run_detector(items, days, window, floor, base) for name, items in calm.items()}
            burst_dets = run_detector(b_items, b_days, window, floor, base)
            for p in P_THRESHOLDS:
                row: dict[str, object] = {"window_min": window, "p_warning": p, "min_bearish": floor}
                for name, dets in calm_dets.items():
                    per_day, by_scope = false_alarms(dets, days, p, floor)
                    row[f"false_alarms_per_day_{name}"] = per_day
                    row[f"false_alarms_by_scope_{name}"] = dict(by_scope)
                outcomes = burst_outcomes(burst_dets, bursts, p, floor)
                row["topic_bursts"] = {str(s): summarise(outcomes, "topic", s) for s in TOPIC_SIZES}
                row["ticker_bursts"] = {str(s): summarise(outcomes, "ticker", s) for s in TICKER_SIZES}
                rows.append(row)
                is_default = (
                    window == DEFAULT.window_buckets
                    and p == DEFAULT.p_warning
                    and floor == DEFAULT.min_bearish
                )
                if is_default:
                    detail = {"setting": row, "bursts": outcomes}
    elapsed = time.perf_counter() - started

    table = sweep_table(rows)
    default_table = detail_table(detail)
    print(table)
    print()
    print(default_table)
    print(f"elapsed {elapsed:.1f} s")

    meta = {
        "seed": args.seed,
        "calm_days": args.calm_days,
        "burn_in_hours": BURN_IN / timedelta(hours=1),
        "bursts_per_size": args.bursts,
        "burst_gap_hours": args.gap_hours,
        "mean_rate_per_min": 3.0,
        "daily_cycle": "rate x (1 + 0.6 cos(2 pi (hour - 15) / 24))",
        "detector": {
            "window_buckets": base.window_buckets,
            "bucket_width_s": base.bucket_width.total_seconds(),
            "baseline_half_life_h": base.baseline_half_life / timedelta(hours=1),
            "warmup_h": base.warmup / timedelta(hours=1),
            "prior_items": base.prior_items,
            "prior_share": base.prior_share,
            "p_warning": base.p_warning,
            "p_high": base.p_high,
            "p_critical": base.p_critical,
            "p_learn": base.p_learn,
            "max_exclusion_h": base.max_exclusion / timedelta(hours=1),
            "min_bearish": base.min_bearish,
        },
        "lifecycle": {"resolve_after_min": 5, "cooldown_min": 30},
        "elapsed_s": round(elapsed, 1),
    }
    finish(info)
    write_json(args.out, {"meta": meta, "machine": info, "sweep": rows, "default_detail": detail})
    args.markdown.write_text(
        "# Spike detector: false alarms and detection delay\n\n"
        f"`python benchmarks/alert_detector.py --calm-days {args.calm_days:g} --bursts {args.bursts} "
        f"--seed {args.seed}` ({elapsed:.0f} s on {describe(info)}). Method: docs/alerts.md; streams: the "
        "script's docstring (real headlines with their true sentiment labels, topics drawn from the topic "
        "file's distribution, 3 items/min on average with a daily cycle).\n\n"
        "## Sweep\n\n"
        f"False alarms: alerts opened per day on {args.calm_days:g} days of calm stream (after a 6 h "
        "burn-in), all scopes (market, 20 topics, every ticker) combined, after the lifecycle's merging "
        "(resolve after 5 normal minutes, 30 min cooldown). *Independent*: items drawn independently (the "
        "issue's calm stream). *Clustered*: stories in clusters of 1.3 items on average sharing topic, "
        "sentiment and tickers (harsher). Burst cells: median delay in minutes from the burst's first "
        "headline to the first detection of its scope, and (detected / injected) within 30 minutes; "
        f"{args.bursts} bursts per size, each spread over 5-10 minutes. **Bold**: the defaults.\n\n"
        + table
        + "\n\n## Defaults in detail\n\n"
        + default_table
        + "\n"
    )


def sweep_table(rows: list[dict[str, object]]) -> str:
    header = (
        "| W (min) | p ≤ | min bearish | false alarms/day, independent | clustered | "
        + " | ".join(f"topic +{s}" for s in TOPIC_SIZES)
        + " | "
        + " | ".join(f"ticker +{s}" for s in TICKER_SIZES)
        + " |"
    )
    lines = [header, "|" + "---|" * (5 + len(TOPIC_SIZES) + len(TICKER_SIZES))]
    for row in rows:
        setting = (row["window_min"], row["p_warning"], row["min_bearish"])
        mark = "**" if setting == (DEFAULT.window_buckets, DEFAULT.p_warning, DEFAULT.min_bearish) else ""
        topic = row["topic_bursts"]
        ticker = row["ticker_bursts"]
        assert isinstance(topic, dict) and isinstance(ticker, dict)
        cells = [
            f"{mark}{row['window_min']}{mark}",
            f"{mark}{row['p_warning']:g}{mark}",
            f"{mark}{row['min_bearish']}{mark}",
        ]
        cells += [
            f"{row['false_alarms_per_day_independent']:.1f}",
            f"{row['false_alarms_per_day_clustered']:.1f}",
        ]
        cells += [fmt_delay(topic[str(s)]) for s in TOPIC_SIZES]
        cells += [fmt_delay(ticker[str(s)]) for s in TICKER_SIZES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detail_table(detail: dict[str, object]) -> str:
    setting = detail.get("setting")
    outcomes = detail.get("bursts")
    if not isinstance(setting, dict) or not isinstance(outcomes, list):
        return "(the defaults are not in the sweep)"
    lines = [
        "| burst | detected | median delay (min) | max delay (min) | severity w/h/c | market also fired | "
        "other topics/tickers fired |",
        "|---|---|---|---|---|---|---|",
    ]
    for scope, sizes in (("topic", TOPIC_SIZES), ("ticker", TICKER_SIZES)):
        for size in sizes:
            rows = [o for o in outcomes if o["scope"] == scope and o["size"] == size]
            s = summarise(outcomes, scope, size)
            sev = Counter(o["severity"] for o in rows)
            median = "-" if s["median_delay_min"] is None else f"{s['median_delay_min']:.1f}"
            worst = "-" if s["max_delay_min"] is None else f"{s['max_delay_min']:.1f}"
            lines.append(
                f"| {scope} +{size} | {s['detected']}/{s['bursts']} | {median} | {worst} | "
                f"{sev['warning']}/{sev['high']}/{sev['critical']} | {s['market_fired']}/{s['bursts']} | "
                f"{s['other_same_scope_fired']} |"
            )
    fa = []
    for name in ("independent", "clustered"):
        by_scope = setting[f"false_alarms_by_scope_{name}"]
        per_day = setting[f"false_alarms_per_day_{name}"]
        scopes = ", ".join(f"{k} {v}" for k, v in sorted(by_scope.items())) or "none"
        fa.append(f"{name} {per_day:.2f}/day ({scopes})")
    return (
        "\n".join(lines) + "\n\nFalse alarms at the defaults, alerts opened by scope: " + "; ".join(fa) + "."
    )


if __name__ == "__main__":
    main()
