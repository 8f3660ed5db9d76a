"""Calibration of the alert detector on model labels: false alarms on calm weeks with the
intraday and weekly volume cycle, and detection delay of bursts by size and scope kind.

Usage: python benchmarks/alert_calibration.py [--labels benchmarks/results/seed_sentiment_predictions.csv]
       [--calm-days 7] [--bursts 6] [--seed 7]

What the alerter sees is the model's labels, so every story here carries the sentiment a
trained finsent model predicted for its headline (`benchmarks/label_seed_headlines.py`
made the committed CSV); `--labels true` uses the data file's labels instead.

Streams (event time only; T0 is a Monday 00:00 UTC):

- volume: a Poisson process whose rate follows the week: weekdays 0.4 stories/min at
  night (21:00-07:00 UTC), 1.5/min in the day, 4.5/min (x3) from the US open 13:30 to
  15:00; weekends 0.3/min.
- calm: each story picks a topic (topic_train.csv's distribution) and then a headline:
  true-bearish with the topic's own probability (the 20 topics get fixed bearish
  propensities from 0.3x to 3x the file's 15 %, so some topics are usually gloomy and some
  are not), else any other headline; its tickers are the headline's cashtags, its
  sentiment the model's label. *Clustered*: stories come in clusters (mean 1.3) sharing
  topic, sentiment and tickers, as when several outlets carry one story.
- bursts: the calm stream plus, every 3 hours at a random minute, `size` extra true-bearish
  headlines evenly over 10 minutes (labelled by the model, so the detector sees fewer
  bearish ones when the model misses some), into one of: a quiet topic with a low / high
  usual bearish share, a busy topic with a low / high share, a thin ticker (one the seed
  headlines mention 2-5 times), a brand-new ticker, or the whole market (a sell-off: the
  stories on random topics).

Syndicated copies (`--syndicate SHARE`): that share of the stories, calm and burst alike,
is re-published by 1-10 more feeds (uniformly), each copy 0-20 minutes after the story with
its topic, sentiment and tickers. The defaults are then measured twice on the same streams:
counting items (every copy) and counting stories (the copies left out, as the alerter does
with FINSENT_ALERT_COUNT=stories; the copies are assumed found, which the clustering does
for re-titled copies: docs/performance.md, story clustering).

Measured per setting: false alarms per calm day = alerts opened (after the lifecycle's
merging and cooldown) on the calm stream after a 6-hour burn-in, all scopes combined;
delay = first detection of the burst's scope minus the burst's first story, missed if none
within 30 minutes. The detector runs once per stream and per setting of the knobs its
state depends on, with the loosest threshold; each threshold then keeps its detections.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from result_file import describe, finish, machine, result_path, write_json, write_result
from seed_headlines import Item, load_model_labels, load_seed_headlines

from bert_core import TOPIC_LABELS
from services.alerting import Detection, DetectorConfig, LifecycleConfig, aggregate, apply, detect

LABELS = Path("benchmarks/results/seed_sentiment_predictions.csv")
SCORE = {"bearish": -1.0, "neutral": 0.0, "bullish": 1.0}
T0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
BURN_IN = timedelta(hours=6)
HORIZON = timedelta(minutes=30)
SIZES = (5, 10, 20, 40)
KINDS = ("topic quiet, low share", "topic quiet, high share", "topic busy, low share",
         "topic busy, high share", "ticker thin", "ticker new", "market sell-off")  # fmt: skip
P_THRESHOLDS = (1e-4, 1e-5, 1e-6, 1e-7)
SURGE_FLOORS = (3, 4)
SHORT_SPANS = (3, 5)
DEFAULT = DetectorConfig()


@dataclass(frozen=True, slots=True)
class Burst:
    kind: str
    scope: str
    key: str
    size: int
    start: datetime


class Corpus:
    def __init__(self, labels: str, rng: np.random.Generator) -> None:
        seed = load_seed_headlines()
        self.truth = seed.truth
        self.tickers = seed.tickers
        self.seen = list(self.truth) if labels == "true" else load_model_labels(Path(labels), seed)
        self.bearish = np.array([i for i, s in enumerate(self.truth) if s == "bearish"])
        self.other = np.array([i for i, s in enumerate(self.truth) if s != "bearish"])
        self.topic_p = seed.topic_p
        # fixed per-topic bearish propensity, 0.3x .. 3x the file's rate, in a seeded order
        base = len(self.bearish) / len(self.truth)
        factors = np.geomspace(0.3, 3.0, len(TOPIC_LABELS))[rng.permutation(len(TOPIC_LABELS))]
        self.topic_bearish = np.minimum(base * factors, 0.9)
        mentions = seed.ticker_mentions()
        self.thin_tickers = sorted(t for t, n in mentions.items() if 2 <= n <= 5)

    def topic_kinds(self) -> dict[str, str]:
        """The topic each topic burst kind goes into: quiet = among the 6 least frequent,
        busy = among the 6 most frequent; low / high = the lowest / highest bearish share."""
        order = np.argsort(self.topic_p)
        quiet, busy = order[:6], order[-6:]
        pick = {
            "topic quiet, low share": min(quiet, key=lambda i: self.topic_bearish[i]),
            "topic quiet, high share": max(quiet, key=lambda i: self.topic_bearish[i]),
            "topic busy, low share": min(busy, key=lambda i: self.topic_bearish[i]),
            "topic busy, high share": max(busy, key=lambda i: self.topic_bearish[i]),
        }
        return {k: TOPIC_LABELS[int(i)] for k, i in pick.items()}


def rate_per_min(minutes: np.ndarray) -> np.ndarray:
    day = (minutes // 1440).astype(int) % 7
    hour = (minutes % 1440) / 60.0
    weekday = np.where((hour >= 13.5) & (hour < 15.0), 4.5, np.where((hour >= 7.0) & (hour < 21.0), 1.5, 0.4))
    return np.where(day >= 5, 0.3, weekday)


def arrivals(rng: np.random.Generator, minutes: float, scale: float) -> np.ndarray:
    peak = 4.5 * scale
    n = rng.poisson(peak * minutes)
    t = np.sort(rng.uniform(0.0, minutes, n))
    return t[rng.uniform(0.0, peak, n) < rate_per_min(t) * scale]


def item(
    c: Corpus, event_id: str, text: int, at: float, topic: str, tickers: tuple[str, ...] | None = None
) -> Item:
    seen = c.seen[text]
    return Item(
        event_id=f"{event_id}-{text}",
        published_at=T0 + timedelta(minutes=at),
        topic=topic,
        sentiment=seen,
        sentiment_score=SCORE[seen],
        tickers=c.tickers[text] if tickers is None else tickers,
    )


def calm_stream(
    c: Corpus, rng: np.random.Generator, days: float, *, clustered: bool, prefix: str
) -> list[Item]:
    minutes = days * 1440.0
    extra_mean = 0.3 if clustered else 0.0
    items: list[Item] = []
    for n, t0 in enumerate(arrivals(rng, minutes, 1.0 / (1.0 + extra_mean))):
        k = int(rng.choice(len(TOPIC_LABELS), p=c.topic_p))
        pool = c.bearish if rng.uniform() < c.topic_bearish[k] else c.other
        first = int(pool[rng.integers(len(pool))])
        extra = int(rng.geometric(1.0 / (1.0 + extra_mean))) - 1 if clustered else 0
        offsets = [0.0, *np.cumsum(rng.exponential(1.0, extra)).tolist()]
        same = [i for i in (c.bearish if c.truth[first] == "bearish" else c.other)]
        for j, dt in enumerate(offsets):
            text = first if j == 0 else int(same[rng.integers(len(same))])
            at = float(t0 + dt)
            if at < minutes:
                items.append(item(c, f"{prefix}-{n}-{j}", text, at, TOPIC_LABELS[k], c.tickers[first]))
    return items


def burst_stream(
    c: Corpus, rng: np.random.Generator, per_cell: int, gap_hours: float
) -> tuple[list[Item], list[Burst], float]:
    plan = [(kind, size) for kind in KINDS for size in SIZES for _ in range(per_cell)]
    order = rng.permutation(len(plan))
    days = (len(plan) + 2) * gap_hours / 24.0
    items = calm_stream(c, rng, days, clustered=False, prefix="b")
    topics = c.topic_kinds()
    bursts: list[Burst] = []
    for n, idx in enumerate(order):
        kind, size = plan[int(idx)]
        start_min = gap_hours * 60.0 * (n + 1) + float(rng.integers(0, 60))
        if kind.startswith("topic"):
            scope, key = "topic", topics[kind]
        elif kind == "ticker thin":
            scope, key = "ticker", c.thin_tickers[int(rng.integers(len(c.thin_tickers)))]
        elif kind == "ticker new":
            scope, key = "ticker", f"NEW{n}"
        else:
            scope, key = "market", "*"
        for j in range(size):
            text = int(c.bearish[rng.integers(len(c.bearish))])
            at = start_min + 10.0 * j / size
            if scope == "topic":
                items.append(item(c, f"burst-{n}-{j}", text, at, key, ()))
            elif scope == "ticker":
                topic = TOPIC_LABELS[int(rng.choice(len(TOPIC_LABELS), p=c.topic_p))]
                items.append(item(c, f"burst-{n}-{j}", text, at, topic, (key,)))
            else:
                topic = TOPIC_LABELS[int(rng.choice(len(TOPIC_LABELS), p=c.topic_p))]
                items.append(item(c, f"burst-{n}-{j}", text, at, topic))
        bursts.append(Burst(kind, scope, key, size, T0 + timedelta(minutes=start_min)))
    return items, sorted(bursts, key=lambda b: b.start), days


def syndicate(items: Sequence[Item], rng: np.random.Generator, share: float, days: float) -> list[Item]:
    """`items` plus, for `share` of them, 1-10 copies each (event id `<story>-copy-<k>`),
    those within the stream's `days`."""
    end = T0 + timedelta(days=days)
    out = list(items)
    for it in items:
        if rng.uniform() < share:
            for k in range(int(rng.integers(1, 11))):
                at = it.published_at + timedelta(minutes=float(rng.uniform(0.0, 20.0)))
                if at < end:
                    out.append(replace(it, event_id=f"{it.event_id}-copy-{k}", published_at=at))
    return sorted(out, key=lambda i: (i.published_at, i.event_id))


def stories_only(items: Sequence[Item]) -> list[Item]:
    """What the alerter counts with FINSENT_ALERT_COUNT=stories: each story's first item."""
    return [i for i in items if "-copy-" not in i.event_id]


def stories_vs_items(
    c: Corpus, rng: np.random.Generator, args: argparse.Namespace, info: dict[str, object]
) -> None:
    """The defaults on syndicated streams, counting items and counting stories."""
    started = time.perf_counter()
    days = args.calm_days + BURN_IN / timedelta(days=1)
    calm = syndicate(calm_stream(c, rng, days, clustered=False, prefix="i"), rng, args.syndicate, days)
    b_items, bursts, b_days = burst_stream(c, rng, args.bursts, args.gap_hours)
    b_items = syndicate(b_items, rng, args.syndicate, b_days)
    lines = [
        f"Streams: {args.syndicate:.0%} of stories re-published by 1-10 more feeds; defaults "
        f"(p_warning {DEFAULT.p_warning:g}). Calm {args.calm_days:g} days, {len(bursts)} bursts.",
        "",
        "| counting | items in calm stream | false alarms/day, calm | median delay, bursts ≥ 10 (min) "
        "| detected ≥ 10 | median delay, bursts of 5 (min) | detected, 5 |",
        "|---|---|---|---|---|---|---|",
    ]
    results: dict[str, object] = {}
    for counting, view in (("items", lambda xs: list(xs)), ("stories", stories_only)):
        calm_view, burst_view = view(calm), view(b_items)
        per_day, by_scope = false_alarms(run_detector(calm_view, days, DEFAULT), days, DEFAULT.p_warning)
        rows = outcomes(run_detector(burst_view, b_days, DEFAULT), bursts, DEFAULT.p_warning)
        big = [r for r in rows if int(str(r["size"])) >= 10]
        small = [r for r in rows if int(str(r["size"])) == 5]
        big_delays = [float(str(r["delay_min"])) for r in big if r["delay_min"] is not None]
        small_delays = [float(str(r["delay_min"])) for r in small if r["delay_min"] is not None]
        median_big = float(np.median(big_delays)) if big_delays else None
        median_small = float(np.median(small_delays)) if small_delays else None
        lines.append(
            f"| {counting} | {len(calm_view):,} | {per_day:.2f} | "
            f"{'-' if median_big is None else f'{median_big:.1f}'} | {len(big_delays)}/{len(big)} | "
            f"{'-' if median_small is None else f'{median_small:.1f}'} | {len(small_delays)}/{len(small)} |"
        )
        results[counting] = {
            "false_alarms_per_day": per_day,
            "false_alarms_by_scope": dict(by_scope),
            "median_delay_10plus": median_big,
            "detected_10plus": [len(big_delays), len(big)],
            "median_delay_5": median_small,
            "detected_5": [len(small_delays), len(small)],
        }
    table = "\n".join(lines)
    elapsed = time.perf_counter() - started
    print(table, f"\nelapsed {elapsed:.0f} s")
    out = args.out or result_path("alert_stories")
    write_result("alert_stories", {"syndicate": args.syndicate, "seed": args.seed, **results}, info, path=out)
    (args.markdown or out.with_suffix(".md")).write_text(
        "# Alert detector: counting stories vs items on syndicated streams\n\n"
        f"`python benchmarks/alert_calibration.py --syndicate {args.syndicate:g} --labels {args.labels} "
        f"--calm-days {args.calm_days:g} --bursts {args.bursts} --seed {args.seed}` ({elapsed:.0f} s on "
        f"{describe(info)})\n\n" + table + "\n"
    )


def run_detector(items: Sequence[Item], days: float, config: DetectorConfig) -> list[Detection]:
    permissive = replace(config, p_warning=max(P_THRESHOLDS), p_learn=max(config.p_learn, max(P_THRESHOLDS)))
    until = T0 + timedelta(days=days)
    return detect(aggregate(items).values(), until=until, config=permissive).detections


def false_alarms(dets: list[Detection], days: float, p: float) -> tuple[float, Counter[str]]:
    kept = [d for d in dets if d.p_value <= p]
    end = T0 + timedelta(days=days)
    run = apply(None, kept, now=end, config=LifecycleConfig())
    opened = [
        a.detection
        for a in run.actions
        if a.kind == "open" and a.detection is not None and a.detection.window_end >= T0 + BURN_IN
    ]
    return len(opened) / (days - BURN_IN / timedelta(days=1)), Counter(d.scope for d in opened)


def outcomes(dets: list[Detection], bursts: list[Burst], p: float) -> list[dict[str, object]]:
    kept = [d for d in dets if d.p_value <= p]
    rows = []
    for b in bursts:
        stop = b.start + HORIZON
        hits = [d for d in kept if d.scope == b.scope and d.key == b.key and b.start < d.window_end <= stop]
        market = b.scope != "market" and any(
            d.scope == "market" and b.start < d.window_end <= stop for d in kept
        )
        delay = (min(d.window_end for d in hits) - b.start) / timedelta(minutes=1) if hits else None
        tests = sorted({t for d in hits for t in d.tests})
        rows.append(
            {"kind": b.kind, "size": b.size, "delay_min": delay, "market_fired": market, "tests": tests}
        )
    return rows


def cell(rows: list[dict[str, object]], kind: str, size: int) -> tuple[float | None, int, int]:
    mine = [r for r in rows if r["kind"] == kind and r["size"] == size]
    delays = [float(r["delay_min"]) for r in mine if r["delay_min"] is not None]  # type: ignore[arg-type]
    return (statistics.median(delays) if delays else None, len(delays), len(mine))


def fmt(c: tuple[float | None, int, int]) -> str:
    median, hit, n = c
    return f"- (0/{n})" if median is None else f"{median:.1f} ({hit}/{n})"


def big_burst_median(rows: list[dict[str, object]]) -> float | None:
    """Median delay over the bursts of 10+ stories (missed ones count as the horizon)."""
    delays = [
        float(r["delay_min"]) if r["delay_min"] is not None else HORIZON / timedelta(minutes=1)  # type: ignore[arg-type]
        for r in rows
        if int(r["size"]) >= 10  # type: ignore[call-overload]
    ]
    return statistics.median(delays) if delays else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(LABELS), help="predicted-labels CSV, or 'true'")
    parser.add_argument("--calm-days", type=float, default=7.0)
    parser.add_argument("--bursts", type=int, default=6, help="bursts per (kind, size)")
    parser.add_argument("--gap-hours", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--out", type=Path, help="default: results/alert_calibration.json (--syndicate: alert_stories.json)"
    )
    parser.add_argument("--markdown", type=Path, help="default: the --out file's name with .md")
    parser.add_argument(
        "--syndicate",
        type=float,
        default=0.0,
        help="share of stories re-published by 1-10 feeds: compare counting items and stories",
    )
    args = parser.parse_args()
    info = machine()
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    c = Corpus(args.labels, rng)
    if args.syndicate > 0:
        stories_vs_items(c, rng, args, info)
        return
    args.out = args.out or result_path("alert_calibration")
    args.markdown = args.markdown or args.out.with_suffix(".md")
    days = args.calm_days + BURN_IN / timedelta(days=1)
    calm = {
        "independent": calm_stream(c, rng, days, clustered=False, prefix="i"),
        "clustered": calm_stream(c, rng, days, clustered=True, prefix="c"),
    }
    b_items, bursts, b_days = burst_stream(c, rng, args.bursts, args.gap_hours)
    seen_bearish = sum(1 for i in calm["independent"] if i.sentiment == "bearish") / len(calm["independent"])
    print(
        f"calm {days:.2f} days ({len(calm['independent'])} / {len(calm['clustered'])} stories, "
        f"{seen_bearish:.1%} labelled bearish); bursts {b_days:.1f} days, {len(bursts)} bursts"
    )
    sweep: list[dict[str, object]] = []
    default_rows: list[dict[str, object]] = []
    for floor in SURGE_FLOORS:
        for short in SHORT_SPANS:
            config = replace(DEFAULT, surge_min_bearish=floor, surge_short_buckets=short)
            calm_dets = {name: run_detector(items, days, config) for name, items in calm.items()}
            burst_dets = run_detector(b_items, b_days, config)
            for p in P_THRESHOLDS:
                row: dict[str, object] = {
                    "surge_min_bearish": floor,
                    "surge_short_buckets": short,
                    "p_warning": p,
                }
                for name, dets in calm_dets.items():
                    per_day, by_scope = false_alarms(dets, days, p)
                    row[f"false_alarms_per_day_{name}"] = per_day
                    row[f"false_alarms_by_scope_{name}"] = dict(by_scope)
                rows = outcomes(burst_dets, bursts, p)
                row["bursts"] = rows
                row["median_delay_10plus"] = big_burst_median(rows)
                sweep.append(row)
                if (floor, short, p) == (
                    DEFAULT.surge_min_bearish,
                    DEFAULT.surge_short_buckets,
                    DEFAULT.p_warning,
                ):
                    default_rows = rows
            print(f"  floor {floor} short {short}: {time.perf_counter() - started:.0f} s")
    elapsed = time.perf_counter() - started
    sweep_md = sweep_table(sweep)
    detail_md = detail_table(default_rows) if default_rows else "(the defaults are not in the sweep)"
    print(sweep_md, "\n", detail_md, f"\nelapsed {elapsed:.0f} s", sep="\n")
    meta = {
        "labels": args.labels,
        "seed": args.seed,
        "calm_days": args.calm_days,
        "bursts_per_cell": args.bursts,
        "labelled_bearish_share": seen_bearish,
        "topics": c.topic_kinds(),
        "elapsed_s": round(elapsed, 1),
    }
    finish(info)
    write_json(args.out, {"meta": meta, "machine": info, "sweep": sweep})
    args.markdown.write_text(
        "# Alert detector calibration (model labels)\n\n"
        f"`python benchmarks/alert_calibration.py --labels {args.labels} --calm-days {args.calm_days:g} "
        f"--bursts {args.bursts} --seed {args.seed}` ({elapsed:.0f} s on {describe(info)}). Streams and "
        "measures: the script's docstring; method: docs/alerts.md; every setting's bursts: "
        f"`{args.out.name}`.\n\n## Sweep\n\n" + sweep_md + "\n\n## Defaults by burst kind\n\n"
        "Cells: median delay in minutes from the burst's first story to the first detection of its scope "
        "(detected / injected within 30 min).\n\n" + detail_md + "\n"
    )


def sweep_table(sweep: list[dict[str, object]]) -> str:
    lines = [
        "| surge min bearish | short window | p ≤ | false alarms/day, calm | clustered | "
        "median delay, bursts ≥ 10 (min) | detected ≥ 10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sweep:
        rows = row["bursts"]
        assert isinstance(rows, list)
        big = [r for r in rows if int(r["size"]) >= 10]
        hit = sum(1 for r in big if r["delay_min"] is not None)
        setting = (row["surge_min_bearish"], row["surge_short_buckets"], row["p_warning"])
        mark = (
            "**"
            if setting == (DEFAULT.surge_min_bearish, DEFAULT.surge_short_buckets, DEFAULT.p_warning)
            else ""
        )
        median = row["median_delay_10plus"]
        lines.append(
            f"| {mark}{row['surge_min_bearish']}{mark} | {row['surge_short_buckets']} min | "
            f"{row['p_warning']:g} | "
            f"{row['false_alarms_per_day_independent']:.2f} | {row['false_alarms_per_day_clustered']:.2f} | "
            f"{'-' if median is None else f'{median:.1f}'} | {hit}/{len(big)} |"
        )
    return "\n".join(lines)


def detail_table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| burst into | " + " | ".join(f"+{s} in 10 min" for s in SIZES) + " | market also fired |",
        "|---|" + "---|" * (len(SIZES) + 1),
    ]
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        market = sum(1 for r in mine if r["market_fired"])
        lines.append(
            f"| {kind} | "
            + " | ".join(fmt(cell(rows, kind, s)) for s in SIZES)
            + f" | {'-' if kind == 'market sell-off' else f'{market}/{len(mine)}'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
