"""The sample feed `finsent run --demo` replays: real labelled headlines, stamped by event time
so that the alerter sees calm history and then a burst of bearish news.

Pure: the caller reads the labelled rows, extracts tickers and picks the anchor. Why event
time: the alerter judges windows by `published_at`, needs `warmup` of market history before
anything may alert, and compares a window's bearish share with the scope's usual one. A feed
stamped with its arrival time (a few seconds of wall clock) can never show an alert, so the
demo compresses about an hour and a half of news into a few seconds of replay:

    anchor - after - burst - history   calm history (non-bearish headlines, some about the focus)
    anchor - after - burst             the burst: every bearish headline about one ticker
    anchor - after                     calm news again, so the watermark passes the burst's
    anchor                             windows (allowed lateness) and they are judged

The focus is the ticker with the most bearish headlines in the data (in the packaged seed
data, Boeing and the 737 MAX). Its calm headlines in the history give it a low usual
bearish share, so a burst of 15 or more bearish ones within three minutes is improbable
enough to alert on. Data without such a ticker get a market-wide burst of bearish headlines.

Determinism: the selection depends on the rows, `count`, `seed` and the model's labels only;
the event ids on the headlines only (source + headline, no `id`); the times on the anchor. The burst
starts at a fixed offset before the anchor, so a re-run can recover the anchor from the
stored time of the first burst headline (`anchor_from_burst_start`) and send the same stories
at the same times: the scorer stores nothing twice and the alerter raises nothing new.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

DEMO_SOURCE = "finsent-demo"
BURST_SIZE = 19  # most bearish headlines in the burst (the seed data has 19 about Boeing)
MIN_BURST = 15  # fewer bearish headlines about one ticker: the burst is market-wide instead
FOCUS_HISTORY = 15  # calm headlines about the focus ticker spread through the history
MIN_ITEMS = BURST_SIZE + 10
SCORE_BATCH = 64  # headlines per question to the model
MAX_SCAN = 640  # most bearish headlines looked at for a market-wide burst


@dataclass(frozen=True, slots=True)
class DemoTimeline:
    """The event-time layout relative to the anchor (see the module docstring)."""

    history: timedelta = timedelta(minutes=90)
    burst: timedelta = timedelta(minutes=3)
    after: timedelta = timedelta(minutes=7)

    @property
    def burst_offset(self) -> timedelta:
        """How long before the anchor the burst starts."""
        return self.after + self.burst


def demo_timeline(*, warmup: timedelta, window: timedelta, lateness: timedelta) -> DemoTimeline:
    """A layout the alerter can judge: history covers the warm-up plus a window and a margin,
    and the calm news after the burst outlasts the allowed lateness by a few minutes, so the
    watermark passes the windows that close with the burst while the feed is still running."""
    return DemoTimeline(
        history=max(timedelta(minutes=90), warmup + window + timedelta(minutes=20)),
        burst=timedelta(minutes=3),
        after=max(timedelta(minutes=7), lateness + timedelta(minutes=5)),
    )


@dataclass(frozen=True, slots=True)
class DemoFeed:
    """The items to send, in event-time order, and what the demo expects of them."""

    items: tuple[dict[str, Any], ...]
    burst: tuple[dict[str, Any], ...]  # the burst's items (also in `items`)
    focus: str | None  # the ticker the burst is about; None: a market-wide burst
    anchor: datetime
    history_start: datetime
    burst_start: datetime
    burst_end: datetime  # exclusive


def anchor_for(now: datetime) -> datetime:
    """A new demo's anchor: `now` rounded down to the minute (every stamp is in the past)."""
    return now.replace(second=0, microsecond=0)


def anchor_from_burst_start(burst_start: datetime, timeline: DemoTimeline) -> datetime:
    """The anchor of an earlier run, from the stored time of its first burst headline."""
    return burst_start + timeline.burst_offset


def demo_feed(
    rows: Sequence[tuple[str, bool]],
    *,
    count: int,
    seed: int,
    anchor: datetime,
    timeline: DemoTimeline,
    tickers_of: Callable[[str], Iterable[str]],
    model_bearish: Callable[[Sequence[str]], Sequence[bool]] | None = None,
) -> DemoFeed:
    """`count` items from `rows` ((headline, is_bearish) by the data's labels), laid out on
    `timeline` ending at `anchor`. Raises ValueError when the rows cannot make a demo.

    `model_bearish`, when given, says which headlines the serving model labels bearish: the
    burst then takes only bearish headlines the model agrees are bearish, and the calm
    news only headlines it agrees are not, so that a model cut short (a bootstrap on a busy
    machine) still shows the demo's alert, as long as it agrees on enough of them. It is
    asked about as few headlines as will do, a batch at a time.
    """
    agree = _Agreement(model_bearish)
    if count < MIN_ITEMS:
        raise ValueError(f"the demo needs at least {MIN_ITEMS} headlines (its burst alone is {BURST_SIZE})")
    unique: dict[str, bool] = {}
    for text, is_bearish in rows:
        text = " ".join(text.split())
        if text and text not in unique:
            unique[text] = is_bearish
    rng = random.Random(seed)
    bearish = [t for t, b in unique.items() if b]
    calm = [t for t, b in unique.items() if not b]
    rng.shuffle(bearish)
    rng.shuffle(calm)
    mentions = {t: set(tickers_of(t)) for t in unique}
    per_ticker = Counter(tk for t in bearish for tk in mentions[t])
    ranked = sorted(per_ticker.items(), key=lambda kv: (-kv[1], kv[0]))
    top = ranked[0][0] if ranked and ranked[0][1] >= MIN_BURST else None
    focus: str | None = top
    burst: list[str] = []
    if top is not None:
        burst = agree.take([t for t in bearish if top in mentions[t]], BURST_SIZE, bearish=True)
    if len(burst) < MIN_BURST and agree.has_model:  # the model disagrees about the focus
        focus = None
        burst = agree.take(bearish, BURST_SIZE, bearish=True, scan=MAX_SCAN)
    if len(burst) < MIN_BURST:  # the model labels (almost) nothing bearish: the data's labels decide
        agree = _Agreement(None)
        focus = top
        burst = [t for t in bearish if top in mentions[t]][:BURST_SIZE] if top else bearish[:BURST_SIZE]
    if focus is not None:
        focus_calm = agree.take([t for t in calm if focus in mentions[t]], FOCUS_HISTORY, bearish=False)
        others = [t for t in calm if focus not in mentions[t]]
    else:
        focus_calm = []
        others = calm
    if len(burst) < MIN_BURST:
        raise ValueError(f"the demo needs at least {MIN_BURST} bearish headlines, the data has {len(burst)}")
    n_calm = count - len(burst)
    span = timeline.history + timeline.after
    n_after = max(2, round(n_calm * (timeline.after / span)))
    n_before = n_calm - n_after
    focus_calm = focus_calm[: max(0, n_before // 3)]
    if len(others) < n_calm - len(focus_calm):
        raise ValueError(
            f"the demo needs {n_calm - len(focus_calm)} calm headlines, the data has {len(others)}"
        )
    quiet = agree.take(others, n_calm - len(focus_calm), bearish=False, scan=MAX_SCAN + n_calm)
    if len(quiet) < n_calm - len(focus_calm):  # the model labels (almost) everything bearish
        quiet = others[: n_calm - len(focus_calm)]
    before = quiet[: n_before - len(focus_calm)]
    after = quiet[n_before - len(focus_calm) :]
    # the focus's calm headlines evenly through the history, so its usual share is known early
    if focus_calm:
        step = len(before) / len(focus_calm) if before else 1.0
        for i, text in enumerate(focus_calm):
            before.insert(round(i * step) + i, text)

    burst_start = anchor - timeline.burst_offset
    burst_end = burst_start + timeline.burst
    history_start = burst_start - timeline.history
    items = (
        _spread(before, history_start, timeline.history)
        + _spread(burst, burst_start, timeline.burst)
        + _spread(after, burst_end, timeline.after)
    )
    burst_items = tuple(items[len(before) : len(before) + len(burst)])
    return DemoFeed(
        items=tuple(items),
        burst=burst_items,
        focus=focus,
        anchor=anchor,
        history_start=history_start,
        burst_start=burst_start,
        burst_end=burst_end,
    )


class _Agreement:
    """Which headlines the model labels as the data does, asked a batch at a time."""

    def __init__(self, model_bearish: Callable[[Sequence[str]], Sequence[bool]] | None) -> None:
        self._model = model_bearish
        self.asked = 0

    @property
    def has_model(self) -> bool:
        return self._model is not None

    def take(self, texts: Sequence[str], wanted: int, *, bearish: bool, scan: int | None = None) -> list[str]:
        """The first `wanted` of `texts` (looking at no more than `scan`) that the model labels
        bearish (or not); without a model, simply the first `wanted`."""
        if self._model is None:
            return list(texts[:wanted])
        taken: list[str] = []
        limit = len(texts) if scan is None else min(scan, len(texts))
        for start in range(0, limit, SCORE_BATCH):
            batch = texts[start : min(start + SCORE_BATCH, limit)]
            labels = self._model(batch)
            self.asked += len(batch)
            taken.extend(t for t, b in zip(batch, labels, strict=True) if b == bearish)
            if len(taken) >= wanted:
                break
        return taken[:wanted]


def _spread(texts: Sequence[str], start: datetime, span: timedelta) -> list[dict[str, Any]]:
    """Items evenly over [start, start + span), stamped to the second."""
    step = span / max(1, len(texts))
    return [
        {
            "headline": text,
            "source": DEMO_SOURCE,
            "published_at": (start + i * step).replace(microsecond=0).isoformat(),
        }
        for i, text in enumerate(texts)
    ]
