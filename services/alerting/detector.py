"""Negative-spike detector: is the bearish news of a scope unusually high, as a share of
its stories or as a count for the market's current volume?

Pure functions, no I/O; docs/alerts.md has the method, the defaults and how they were chosen.

Per scope and key (the market, each topic, each ticker), at the close of every event-time
bucket that could hold a spike, two tests; a window fires when either does.

- Window: the last `window_buckets` buckets (ten 1-minute buckets by default): `total`
  stories, `bearish` of them bearish.
- Baseline: exponentially decayed counts (half-life `baseline_half_life`) of the scope's
  buckets *before* the window, so a burst cannot hide itself by raising its own baseline.
  Buckets of windows found anomalous (p <= `p_learn` in either test) are left out of the
  baseline for up to `max_exclusion`: otherwise one burst would teach a thin scope, whose
  baseline rests on a handful of stories, that bursts are normal.
- Share test (the mix): the window's bearish count against the beta-binomial predictive
  distribution of `total` stories at the scope's usual share, a Beta posterior whose
  prior is `prior_items` pseudo-stories at the market's share (the market itself uses
  `prior_share`). Conditioning on the window's own volume makes it blind to volume: a
  busy hour with the usual mix raises nothing, and so does a flood of bearish news on a
  scope that is usually bearish anyway. Floor: `min_bearish` bearish stories.
- Surge test (the count), topics and tickers: are there many bearish stories *for the
  market's current volume*? The scope's bearish stories X and the rest of the market's
  stories R in the span are two Poisson streams whose ratio is the scope's usual rate
  (bearish stories per market story, from the decayed baselines), gamma-distributed to
  carry its uncertainty; conditioned on X + R that is X ~ BetaBinomial(X + R, a, b). The
  daily and weekly cycle scales X and R alike and cancels; a quiet night with three
  stories tests as three stories, not as a rate. A new scope starts from the prior
  `topic_prior_rate` / `ticker_prior_rate` worth `surge_prior_stories` market stories,
  and every market story it did not appear in lowers its rate, so a never-seen ticker
  with a burst fires within minutes while a long-known busy one needs far more. Judged
  over the window and over the last `surge_short_buckets` (the smaller p-value counts),
  so a fast burst is seen before it fills the window. Floor: `surge_min_bearish`.
- Rate test, the market: its bearish count against its own history at that hour of the
  week (`RateProfile`: 24 hours x weekday/weekend, half-life `rate_half_life`), a
  negative binomial whose gamma shape is capped at `rate_dispersion` so ordinary
  day-to-day swings of the news flow do not fire; a slot needs `rate_min_history` of
  history first. The bearish excess of the most anomalous topic or ticker is taken out of
  the market's counts first: a burst on one topic is that topic's alert.
- Floors: nothing before the market has `warmup` of history.
- Severity: warning / high / critical by the smaller p-value (`p_warning`, `p_high`,
  `p_critical`); the detection names the test(s) that reached `p_warning`.

Determinism: the state after a bucket depends only on the bucket series up to it, never on
wall-clock time or on how the series was split between calls, so a replay yields the same
detections, and so does a recomputation from stored buckets (see `detect`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast

from services.alerting.buckets import MARKET_KEY, SCOPES, BucketCounts, BucketKey, Scope, bucket_start

Severity = Literal["warning", "high", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("warning", "high", "critical")
SEVERITY_RANK: Final[dict[str, int]] = {s: i for i, s in enumerate(SEVERITIES)}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SCOPE_RANK: Final[dict[str, int]] = {s: i for i, s in enumerate(SCOPES)}
_MARKET: Final[tuple[Scope, str]] = ("market", MARKET_KEY)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Every detector setting with its default, in one place (docs/alerts.md: how chosen)."""

    rule: str = "bearish_spike"  # part of the alert identity (scope, key, rule, window)
    bucket_width: timedelta = timedelta(minutes=1)
    window_buckets: int = 10
    baseline_half_life: timedelta = timedelta(hours=6)
    warmup: timedelta = timedelta(hours=1)  # of market history before anything may alert
    prior_items: float = 20.0  # pseudo-stories pulling a thin scope's share to the market's
    prior_share: float = 0.15  # the market's bearish share before it has history
    min_bearish: int = 5
    p_warning: float = 1e-5
    p_high: float = 1e-7
    p_critical: float = 1e-10
    # Windows this unusual (and above the floor) are kept out of the baseline, so a spike
    # does not teach a thin scope that spikes are normal; a shift lasting longer than
    # `max_exclusion` is learned as the new normal.
    p_learn: float = 1e-3
    max_exclusion: timedelta = timedelta(hours=2)
    max_event_ids: int = 200  # evidence ids kept per detection (the counts stay exact)
    scopes: tuple[Scope, ...] = SCOPES
    # The surge test (count of bearish stories against the scope's usual rate).
    surge_min_bearish: int = 3
    surge_short_buckets: int = 3  # a shorter window the surge test also looks at (fast bursts)
    surge_prior_stories: float = 200.0  # market stories the prior rate of a new scope rests on
    topic_prior_rate: float = 0.0075  # bearish stories of a new topic per market story
    ticker_prior_rate: float = 0.001  # bearish stories of a new ticker per market story
    # The market's rate test, against its own history at that hour of the week.
    rate_half_life: timedelta = timedelta(days=14)
    rate_min_history: timedelta = timedelta(hours=2)  # of that hour-of-week slot before it may fire
    rate_prior_buckets: float = 60.0  # weight of the all-hours rate in a slot's estimate
    rate_dispersion: float = 20.0  # cap on the gamma shape: day-to-day swings of the news flow

    def __post_init__(self) -> None:
        self._check_share()
        if self.surge_min_bearish < 1 or self.surge_short_buckets < 1:
            raise ValueError("surge_min_bearish and surge_short_buckets must be at least 1")
        if self.surge_prior_stories <= 0 or not (
            0.0 < self.topic_prior_rate < 1.0 and 0.0 < self.ticker_prior_rate < 1.0
        ):
            raise ValueError("surge_prior_stories must be positive and the prior rates in (0, 1)")
        if self.rate_half_life < self.bucket_width or self.rate_min_history < timedelta(0):
            raise ValueError("rate_half_life must be at least one bucket and rate_min_history not negative")
        if self.rate_prior_buckets <= 0 or self.rate_dispersion <= 0:
            raise ValueError("rate_prior_buckets and rate_dispersion must be positive")

    def _check_share(self) -> None:
        if self.bucket_width <= timedelta(0) or self.window_buckets < 1:
            raise ValueError("bucket_width must be positive and window_buckets at least 1")
        if self.baseline_half_life < self.bucket_width:
            raise ValueError("baseline_half_life must be at least one bucket")
        if not 0.0 < self.prior_share < 1.0 or self.prior_items <= 0:
            raise ValueError("prior_share must be in (0, 1) and prior_items positive")
        if not 1.0 >= self.p_learn >= self.p_warning >= self.p_high >= self.p_critical > 0.0:
            raise ValueError("need 1 >= p_learn >= p_warning >= p_high >= p_critical > 0")
        if self.min_bearish < 1:
            raise ValueError("min_bearish must be at least 1")

    @property
    def window(self) -> timedelta:
        return self.bucket_width * self.window_buckets


Test = Literal["share", "surge"]
TESTS: Final[tuple[Test, ...]] = ("share", "surge")


@dataclass(frozen=True, slots=True)
class Detection:
    """One window judged a negative spike, with the evidence an alert carries."""

    rule: str
    scope: Scope
    key: str
    window_start: datetime
    window_end: datetime  # exclusive; the event time at which the detection was possible
    total: int
    bearish: int
    baseline_share: float  # expected bearish share (posterior mean)
    baseline_items: float  # decayed number of stories the baseline rests on (prior excluded)
    expected_bearish: float  # total * baseline_share
    z_score: float  # (bearish - expected) / beta-binomial standard deviation
    p_value: float  # the smaller of the two tests' p-values: the severity's statistic
    severity: Severity
    event_ids: tuple[str, ...] = ()  # the window's bearish stories (first max_event_ids)
    tests: tuple[Test, ...] = ("share",)  # the tests whose p-value reached p_warning
    p_share: float = 1.0  # share test: P(X >= bearish | total, the scope's usual share)
    p_surge: float = 1.0  # surge test (the market: rate test), over its most surprising span
    usual_bearish: float = 0.0  # bearish stories the scope usually gets in such a window
    surge_minutes: float = 0.0  # the span that gave p_surge
    copies: tuple[int, ...] = ()  # counting stories: re-published copies of each of event_ids

    @property
    def share(self) -> float:
        return self.bearish / self.total if self.total else 0.0

    @property
    def rate_ratio(self) -> float:
        """Bearish stories in the window over the usual number (inf when none are usual)."""
        return self.bearish / self.usual_bearish if self.usual_bearish > 0 else math.inf

    @property
    def dedupe_key(self) -> str:
        """Identity of this window's detection: the same on every replay."""
        return f"{self.rule}|{self.scope}|{self.key}|{self.window_start.isoformat()}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready evidence (for the alert row, the `alerts` topic, notifications)."""
        return {
            "rule": self.rule,
            "scope": self.scope,
            "key": self.key,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "total": self.total,
            "bearish": self.bearish,
            "share": self.share,
            "baseline_share": self.baseline_share,
            "baseline_items": self.baseline_items,
            "expected_bearish": self.expected_bearish,
            "z_score": self.z_score,
            "p_value": self.p_value,
            "severity": self.severity,
            "tests": list(self.tests),
            "p_share": self.p_share,
            "p_surge": self.p_surge,
            "usual_bearish": self.usual_bearish,
            "rate_ratio": self.rate_ratio,
            "surge_minutes": self.surge_minutes,
            "event_ids": list(self.event_ids),
            **(
                {
                    "stories": [
                        {"story_id": e, "copies": c} for e, c in zip(self.event_ids, self.copies, strict=True)
                    ]
                }
                if self.copies
                else {}
            ),
        }


@dataclass(frozen=True, slots=True)
class ScopeState:
    """What the detector remembers of one scope: its baseline and its unfolded buckets.

    `base_*` are decayed sums over the buckets that ended by `folded_until` (weights
    halve every half-life, measured to `folded_until`); `recent` holds the (start, total,
    bearish, excluded) of buckets that can still fall inside a future window, `excluded`
    marking those of an anomalous window, which will not be learned. `anomalous_since` /
    `last_anomalous` delimit the current run of anomalous windows (by window end bucket).
    """

    first_seen: datetime
    folded_until: datetime | None = None
    base_total: float = 0.0
    base_bearish: float = 0.0
    recent: tuple[tuple[datetime, int, int, bool], ...] = ()
    anomalous_since: datetime | None = None
    last_anomalous: datetime | None = None


STATE_VERSION: Final = 2
RATE_SLOTS: Final = 48  # hour of the day (UTC) x (weekday, weekend)


@dataclass(frozen=True, slots=True)
class RateProfile:
    """The market's bearish stories per bucket by hour of the week: decayed sums (half-life
    `rate_half_life`) of bearish stories and of buckets observed in each slot, each as
    seen from the newest bucket it saw (`last`); `until` is the first bucket not folded
    in yet."""

    until: datetime | None = None
    bearish: tuple[float, ...] = (0.0,) * RATE_SLOTS
    buckets: tuple[float, ...] = (0.0,) * RATE_SLOTS
    last: tuple[datetime | None, ...] = (None,) * RATE_SLOTS  # newest bucket each slot saw


@dataclass(frozen=True, slots=True)
class DetectorState:
    """The detector's whole memory: JSON-serialisable, and recomputable from the buckets.

    `evaluated_until` is the end of the last bucket whose window was judged; the next
    call continues from there. Persist it with the detections of the same transaction, or
    rebuild it by running `detect` over the stored bucket series from the beginning (or
    from an older persisted state).
    """

    evaluated_until: datetime | None = None
    scopes: Mapping[tuple[Scope, str], ScopeState] = field(default_factory=dict)
    market_rate: RateProfile = field(default_factory=lambda: RateProfile())

    def to_dict(self) -> dict[str, Any]:
        def ts(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "version": STATE_VERSION,
            "evaluated_until": ts(self.evaluated_until),
            "market_rate": {
                "until": ts(self.market_rate.until),
                "bearish": list(self.market_rate.bearish),
                "buckets": list(self.market_rate.buckets),
                "last": [ts(v) for v in self.market_rate.last],
            },
            "scopes": [
                {
                    "scope": scope,
                    "key": key,
                    "first_seen": ts(s.first_seen),
                    "folded_until": ts(s.folded_until),
                    "base_total": s.base_total,
                    "base_bearish": s.base_bearish,
                    "recent": [
                        [ts(start), total, bearish, excluded] for start, total, bearish, excluded in s.recent
                    ],
                    "anomalous_since": ts(s.anomalous_since),
                    "last_anomalous": ts(s.last_anomalous),
                }
                for (scope, key), s in sorted(self.scopes.items(), key=lambda kv: _scope_sort(kv[0]))
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorState:
        """Reads this version's states and the version-1 ones stored before the surge test
        (those start the market's hour-of-week profile empty: the rate test waits for
        `rate_min_history` of it, the share and surge tests carry on unchanged)."""

        def ts(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value).astimezone(UTC)

        version = int(data.get("version", 1))
        if version not in (1, STATE_VERSION):
            raise ValueError(f"detector state version {version} is not readable by this finsent")
        rate = RateProfile()
        if version >= 2:
            row = data["market_rate"]
            rate = RateProfile(
                until=ts(row["until"]),
                bearish=tuple(float(v) for v in row["bearish"]),
                buckets=tuple(float(v) for v in row["buckets"]),
                last=tuple(ts(v) for v in row["last"]),
            )
            if {len(rate.bearish), len(rate.buckets), len(rate.last)} != {RATE_SLOTS}:
                raise ValueError(f"detector state: market_rate needs {RATE_SLOTS} slots")
        scopes: dict[tuple[Scope, str], ScopeState] = {}
        for row in data.get("scopes", []):
            scope = row["scope"]
            if scope not in _SCOPE_RANK:
                raise ValueError(f"unknown scope {scope!r} in detector state")
            scopes[(scope, str(row["key"]))] = ScopeState(
                first_seen=_required(ts(row["first_seen"])),
                folded_until=ts(row["folded_until"]),
                base_total=float(row["base_total"]),
                base_bearish=float(row["base_bearish"]),
                recent=tuple(
                    (_required(ts(start)), int(total), int(bearish), bool(excluded))
                    for start, total, bearish, excluded in row["recent"]
                ),
                anomalous_since=ts(row.get("anomalous_since")),
                last_anomalous=ts(row.get("last_anomalous")),
            )
        return cls(evaluated_until=ts(data.get("evaluated_until")), scopes=scopes, market_rate=rate)


@dataclass(frozen=True, slots=True)
class DetectionRun:
    detections: list[Detection]
    state: DetectorState


def _required(value: datetime | None) -> datetime:
    if value is None:
        raise ValueError("missing timestamp in detector state")
    return value


def _scope_sort(sk: tuple[str, str]) -> tuple[int, str]:
    return (_SCOPE_RANK[sk[0]], sk[1])


# --- statistics -------------------------------------------------------------------------


def _lbeta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def betabinom_sf(k: int, n: int, alpha: float, beta: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(n, alpha, beta), summed exactly in pure Python.

    Beta-binomial, not binomial: the baseline share is itself an estimate, and a scope
    with little history must need more evidence to be called anomalous.
    """
    if alpha <= 0 or beta <= 0:
        raise ValueError("alpha and beta must be positive")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_term = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + _lbeta(k + alpha, n - k + beta)
        - _lbeta(alpha, beta)
    )
    term = 1.0
    total = 1.0
    # pmf(j+1)/pmf(j) = (n-j)(j+alpha) / ((j+1)(n-j-1+beta)); summed relative to pmf(k)
    for j in range(k, n):
        term *= (n - j) * (j + alpha) / ((j + 1) * (n - j - 1 + beta))
        total += term
        if term < total * 1e-17:
            break
    return min(1.0, math.exp(log_term) * total)


def nbinom_sf(k: int, r: float, p: float) -> float:
    """P(X >= k) for X ~ NegativeBinomial(r, p) (pmf Γ(j+r)/(Γ(r) j!) p^r (1-p)^j), in pure
    Python: the Poisson count whose rate is gamma distributed (shape r, mean r(1-p)/p).

    The upper tail is summed from pmf(k) when k is past the mean (tiny p-values keep
    their precision); otherwise one minus the lower sum.
    """
    if r <= 0 or not 0.0 < p <= 1.0:
        raise ValueError("r must be positive and p in (0, 1]")
    if k <= 0:
        return 1.0
    if p == 1.0:
        return 0.0
    q = 1.0 - p
    mean = r * q / p
    if k <= mean:
        term = math.exp(r * math.log(p))
        below = term
        for j in range(k - 1):
            term *= (j + r) / (j + 1) * q
            below += term
        return min(1.0, max(0.0, 1.0 - below))
    log_pmf = math.lgamma(k + r) - math.lgamma(r) - math.lgamma(k + 1) + r * math.log(p) + k * math.log(q)
    term = total = 1.0
    j = k
    while True:
        term *= (j + r) / (j + 1) * q
        total += term
        j += 1
        if term < total * 1e-17 or j - k > 1_000_000:
            break
    return min(1.0, math.exp(log_pmf) * total)


def _severity(p_value: float, config: DetectorConfig) -> Severity | None:
    if p_value <= config.p_critical:
        return "critical"
    if p_value <= config.p_high:
        return "high"
    if p_value <= config.p_warning:
        return "warning"
    return None


# --- the walk ---------------------------------------------------------------------------


class _Scope:
    """Mutable working copy of a ScopeState, in integer bucket indices (exact arithmetic)."""

    __slots__ = (
        "anomalous_since",
        "base_bearish",
        "base_total",
        "first_seen",
        "folded_until",
        "last_anomalous",
        "recent",
    )

    def __init__(self, first_seen: int) -> None:
        self.first_seen = first_seen
        self.folded_until: int | None = None
        self.base_total = 0.0
        self.base_bearish = 0.0
        self.recent: list[tuple[int, int, int, bool]] = []
        self.anomalous_since: int | None = None
        self.last_anomalous: int | None = None

    def fold_before(self, index: int, decay: float) -> None:
        """Move buckets that start before `index` from `recent` into the baseline.

        Each fold depends only on the bucket and the previous fold, so the baseline is
        the same whichever evaluation (or call) happens to trigger it.
        """
        while self.recent and self.recent[0][0] < index:
            start, total, bearish, excluded = self.recent.pop(0)
            if excluded:
                continue
            if self.folded_until is not None:
                weight = decay ** (start + 1 - self.folded_until)
                self.base_total *= weight
                self.base_bearish *= weight
            self.base_total += total
            self.base_bearish += bearish
            self.folded_until = start + 1

    def mark_anomalous(self, index: int, max_exclusion: int) -> None:
        """Keep the buckets of the window ending at `index` out of the baseline, unless the
        run of anomalous windows has lasted `max_exclusion` buckets (then it is the norm)."""
        if self.last_anomalous != index - 1 or self.anomalous_since is None:
            self.anomalous_since = index
        self.last_anomalous = index
        if index - self.anomalous_since < max_exclusion:
            self.recent = [(s, t, b, True) for s, t, b, _ in self.recent]

    def baseline_at(self, index: int, decay: float) -> tuple[float, float]:
        """(decayed items, decayed bearish) of the baseline as seen from bucket `index`."""
        if self.folded_until is None:
            return 0.0, 0.0
        weight = decay ** (index - self.folded_until)
        return self.base_total * weight, self.base_bearish * weight


def _index(ts: datetime, width: timedelta) -> int:
    return (ts - _EPOCH) // width


def _time(index: int, width: timedelta) -> datetime:
    return _EPOCH + index * width


def _to_working(state: ScopeState, width: timedelta) -> _Scope:
    w = _Scope(_index(state.first_seen, width))
    w.folded_until = None if state.folded_until is None else _index(state.folded_until, width)
    w.base_total = state.base_total
    w.base_bearish = state.base_bearish
    w.recent = [(_index(s, width), t, b, x) for s, t, b, x in state.recent]
    w.anomalous_since = None if state.anomalous_since is None else _index(state.anomalous_since, width)
    w.last_anomalous = None if state.last_anomalous is None else _index(state.last_anomalous, width)
    return w


def _to_state(w: _Scope, width: timedelta) -> ScopeState:
    return ScopeState(
        first_seen=_time(w.first_seen, width),
        folded_until=None if w.folded_until is None else _time(w.folded_until, width),
        base_total=w.base_total,
        base_bearish=w.base_bearish,
        recent=tuple((_time(s, width), t, b, x) for s, t, b, x in w.recent),
        anomalous_since=None if w.anomalous_since is None else _time(w.anomalous_since, width),
        last_anomalous=None if w.last_anomalous is None else _time(w.last_anomalous, width),
    )


def _span(recent: Sequence[tuple[int, int, int, bool]], t: int, n: int) -> tuple[int, int]:
    """(stories, bearish) of the buckets in the `n` buckets ending with bucket `t`."""
    first = t - n + 1
    total = bearish = 0
    for start, count, bear, _ in recent:
        if first <= start <= t:
            total += count
            bearish += bear
    return total, bearish


def _slot(index: int, width: timedelta) -> int:
    """Hour-of-week slot of bucket `index`: hour of the day (UTC), weekday or weekend."""
    seconds = (index * width) // timedelta(seconds=1)
    day, second = divmod(seconds, 86400)
    weekend = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday (Monday = 0)
    return second // 3600 + (24 if weekend else 0)


class _Rate:
    """Working copy of the market's RateProfile. Each slot is decayed lazily to the last
    bucket it saw, bucket by bucket in order, so the profile is the same however the
    series is split between calls (the determinism guarantee)."""

    __slots__ = ("bearish", "buckets", "last", "until", "width")

    def __init__(self, width: timedelta) -> None:
        self.width = width
        self.until: int | None = None
        self.bearish = [0.0] * RATE_SLOTS
        self.buckets = [0.0] * RATE_SLOTS
        self.last: list[int | None] = [None] * RATE_SLOTS

    @classmethod
    def from_state(cls, state: RateProfile, width: timedelta) -> _Rate:
        r = cls(width)
        r.until = None if state.until is None else _index(state.until, width)
        r.bearish = list(state.bearish)
        r.buckets = list(state.buckets)
        r.last = [None if v is None else _index(v, width) for v in state.last]
        return r

    def to_state(self, width: timedelta) -> RateProfile:
        return RateProfile(
            until=None if self.until is None else _time(self.until, width),
            bearish=tuple(self.bearish),
            buckets=tuple(self.buckets),
            last=tuple(None if v is None else _time(v, width) for v in self.last),
        )

    def advance(self, market: _Scope, to: int, decay: float) -> None:
        """Fold the market's buckets before `to` into the profile (call before the market's
        own `fold_before(to)`, which drops them from `recent`). Empty buckets count as
        observed with no bearish story; buckets of anomalous windows are not learned."""
        if self.until is None:
            self.until = market.first_seen if market.folded_until is None else market.folded_until
        if to <= self.until:
            return
        bearish = {s: b for s, _, b, x in market.recent if s < to and not x}
        excluded = {s for s, _, _, x in market.recent if s < to and x}
        for m in range(self.until, to):
            if m in excluded:
                continue
            slot = _slot(m, self.width)
            last = self.last[slot]
            weight = 0.0 if last is None else decay ** (m - last)
            self.buckets[slot] = self.buckets[slot] * weight + 1.0
            self.bearish[slot] = self.bearish[slot] * weight + bearish.get(m, 0)
            self.last[slot] = m
        self.until = to

    def expected(
        self, t: int, decay: float, config: DetectorConfig, min_buckets: float
    ) -> tuple[float, float] | None:
        """(gamma shape, mean bearish per bucket) at bucket `t`'s slot, or None while that
        slot has less than `min_buckets` of history. The all-hours rate is the prior."""
        assert self.until is not None
        seen = [
            (b * decay ** (self.until - last), n * decay ** (self.until - last))
            for b, n, last in zip(self.bearish, self.buckets, self.last, strict=True)
            if last is not None
        ]
        slot = _slot(t, self.width)
        last = self.last[slot]
        if last is None or not seen:
            return None
        weight = decay ** (self.until - last)
        slot_bearish, slot_buckets = self.bearish[slot] * weight, self.buckets[slot] * weight
        if slot_buckets < min_buckets:
            return None
        overall = math.fsum(b for b, _ in seen) / math.fsum(n for _, n in seen)
        shape = slot_bearish + config.rate_prior_buckets * overall
        exposure = slot_buckets + config.rate_prior_buckets
        return shape, shape / exposure


@dataclass(frozen=True, slots=True)
class _Judged:
    sk: tuple[Scope, str]
    total: int
    bearish: int
    share: float  # expected bearish share (share test)
    base_total: float
    z_score: float
    p_share: float
    p_surge: float
    usual: float  # usual bearish count in the whole window
    surge_span: int
    excess: dict[int, int] = field(default_factory=dict)  # span -> bearish above the usual


def _share_test(
    total: int, bearish: int, base_total: float, base_bearish: float, prior: float, config: DetectorConfig
) -> tuple[float, float, float]:
    """(p-value, expected share, z-score) of the share test."""
    alpha = base_bearish + config.prior_items * prior
    beta = (base_total - base_bearish) + config.prior_items * (1.0 - prior)
    p_value = betabinom_sf(bearish, total, alpha, beta) if bearish >= config.min_bearish else 1.0
    share = alpha / (alpha + beta)
    expected = total * share
    variance = total * share * (1.0 - share) * (alpha + beta + total) / (alpha + beta + 1.0)
    z = (bearish - expected) / math.sqrt(variance) if variance > 0 else math.inf
    return p_value, share, z


def _judge_scope(
    sk: tuple[Scope, str],
    ws: _Scope,
    t: int,
    window_first: int,
    decay: float,
    config: DetectorConfig,
    spans: Sequence[int],
    market_share: float,
    market_base_total: float,
    market_spans: Mapping[int, tuple[int, int]],
) -> _Judged | None:
    """Both tests of a topic or ticker. The surge test asks whether the scope's bearish
    stories are many *for the market's current volume*: X bearish in the span against R
    stories of the rest of the market, X | X + R beta-binomial with the scope's usual
    bearish-per-market-story rate (a Poisson-Gamma model conditioned on the span's total,
    exact for two Poisson streams). The volume cycle scales X and R alike and cancels."""
    w_len = config.window_buckets
    total, bearish = _span(ws.recent, t, w_len)
    if bearish < min(config.min_bearish, config.surge_min_bearish):
        return None
    base_total, base_bearish = ws.baseline_at(window_first, decay)
    p_share, share, z = _share_test(total, bearish, base_total, base_bearish, market_share, config)
    prior_rate = config.topic_prior_rate if sk[0] == "topic" else config.ticker_prior_rate
    alpha = base_bearish + prior_rate * config.surge_prior_stories
    beta = max(market_base_total - base_total, 0.0) + config.surge_prior_stories
    p_surge, best, usual = 1.0, w_len, 0.0
    excess: dict[int, int] = {}
    for n in spans:
        s_total, s_bearish = _span(ws.recent, t, n) if n != w_len else (total, bearish)
        rest = max(market_spans.get(n, (0, 0))[0] - s_total, 0)
        expected = rest * alpha / beta
        if n == w_len:
            usual = expected
        excess[n] = max(0, s_bearish - math.ceil(expected))
        if s_bearish >= config.surge_min_bearish:
            p = betabinom_sf(s_bearish, s_bearish + rest, alpha, beta)
            if p < p_surge:
                p_surge, best = p, n
    return _Judged(sk, total, bearish, share, base_total, z, p_share, p_surge, usual, best, excess)


def _judge_market(
    market: _Scope,
    t: int,
    window_first: int,
    decay: float,
    config: DetectorConfig,
    spans: Sequence[int],
    rate: _Rate,
    rate_decay: float,
    rate_min: float,
    explained: Mapping[int, int],
) -> _Judged | None:
    """Both tests of the market. The bearish excess of the most anomalous topic or ticker
    is taken out first: a burst on one topic or ticker is its alert, not a market-wide one. The rate
    test compares the market's bearish count with its history at that hour of the week
    (negative binomial: a gamma-distributed rate whose shape is capped at
    `rate_dispersion`, so ordinary day-to-day swings of the news flow do not fire)."""
    w_len = config.window_buckets
    total, bearish = _span(market.recent, t, w_len)
    total -= explained.get(w_len, 0)
    bearish -= explained.get(w_len, 0)
    if bearish < min(config.min_bearish, config.surge_min_bearish):
        return None
    base_total, base_bearish = market.baseline_at(window_first, decay)
    p_share, share, z = _share_test(total, bearish, base_total, base_bearish, config.prior_share, config)
    found = rate.expected(t, rate_decay, config, rate_min)
    usual = total * share
    p_surge, best = 1.0, w_len
    if found is not None:
        shape, per_bucket = found
        usual = per_bucket * w_len
        r = min(shape, config.rate_dispersion)
        for n in spans:
            x = _span(market.recent, t, n)[1] if n != w_len else bearish + explained.get(w_len, 0)
            x -= explained.get(n, 0)
            if x >= config.surge_min_bearish and per_bucket > 0:
                p = nbinom_sf(x, r, r / (r + per_bucket * n))
                if p < p_surge:
                    p_surge, best = p, n
    return _Judged(_MARKET, total, bearish, share, base_total, z, p_share, p_surge, usual, best)


def detect(
    buckets: Iterable[BucketCounts],
    *,
    until: datetime,
    config: DetectorConfig | None = None,
    state: DetectorState | None = None,
    event_ids: Mapping[BucketKey, Sequence[str]] | None = None,
) -> DetectionRun:
    """Judge every window that closes in [state.evaluated_until, until); return detections
    in event-time order and the state to continue from.

    `buckets` are the non-empty buckets that start in that range (empty buckets may be left
    out; buckets of scopes not in `config.scopes` are ignored); `until` is a bucket
    boundary no later than the event-time watermark minus the allowed lateness. Without a
    `state` the walk starts at the first bucket. `event_ids` maps a bucket to its bearish
    stories (`buckets.bearish_event_ids`) for the detections' evidence.

    Incremental calls give exactly the detections and state of one call over the whole
    series, which is what makes live, replayed and recomputed runs agree. A bucket before
    `state.evaluated_until` is refused: a story that late must be absorbed by re-running
    from an earlier persisted state (or from the start) over the updated buckets.
    """
    config = config or DetectorConfig()
    state = state or DetectorState()
    width = config.bucket_width
    w_len = config.window_buckets
    decay = 0.5 ** (width / config.baseline_half_life)
    warmup = math.ceil(config.warmup / width)
    max_exclusion = config.max_exclusion // width
    if bucket_start(until, width) != until:
        raise ValueError(f"until {until} is not on the {width} bucket grid")
    end = _index(until, width)
    begin = None if state.evaluated_until is None else _index(state.evaluated_until, width)
    if begin is not None and end < begin:
        raise ValueError(f"until {until} is before the state's evaluated_until {state.evaluated_until}")

    wanted = set(config.scopes)
    new: dict[tuple[Scope, str], dict[int, tuple[int, int]]] = defaultdict(dict)
    for b in buckets:
        if b.scope not in wanted or b.total <= 0:
            continue
        if bucket_start(b.start, width) != b.start:
            raise ValueError(f"bucket {b.bucket_key} is not on the {width} grid")
        i = _index(b.start, width)
        if begin is not None and i < begin:
            raise ValueError(
                f"bucket {b.bucket_key} is before evaluated_until {state.evaluated_until}: "
                "re-run from an earlier state to absorb late stories"
            )
        if i >= end:
            raise ValueError(f"bucket {b.bucket_key} is not closed by until {until}")
        if i in new[(b.scope, b.key)]:
            raise ValueError(f"bucket {b.bucket_key} given twice")
        new[(b.scope, b.key)][i] = (b.total, b.bearish)

    scopes = {sk: _to_working(s, width) for sk, s in state.scopes.items()}
    # A window can only fire while it holds a bucket with stories, so each scope is judged
    # at the W bucket closes after each of its buckets: the same windows a dense walk
    # over every scope and every minute would judge, at a fraction of the cost.
    schedule: dict[int, set[tuple[Scope, str]]] = defaultdict(set)
    for sk, series in new.items():
        for i in series:
            for t in range(i, min(i + w_len, end)):
                schedule[t].add(sk)
    for sk, ws in scopes.items():
        for i, _, _, _ in ws.recent:
            for t in range(max(i, begin if begin is not None else i), min(i + w_len, end)):
                schedule[t].add(sk)

    detections: list[Detection] = []
    ids = event_ids or {}
    rate = _Rate.from_state(state.market_rate, width)
    rate_decay = 0.5 ** (width / config.rate_half_life)
    rate_min = config.rate_min_history / width
    spans = sorted({min(config.surge_short_buckets, w_len), w_len})
    for t in sorted(schedule):
        window_first = t - w_len + 1
        # Fold and append every scope first: the tests of one scope read the market's
        # window and baseline, and the market's test reads the topics' results.
        active: list[tuple[tuple[Scope, str], _Scope]] = []
        for sk in sorted(schedule[t], key=_scope_sort):
            counts = new.get(sk, {}).get(t)
            found = scopes.get(sk)
            if found is None:
                if counts is None:
                    continue
                found = scopes[sk] = _Scope(first_seen=t)
            if sk == _MARKET:
                rate.advance(found, window_first, rate_decay)
            found.fold_before(window_first, decay)
            if counts is not None:
                found.recent.append((t, counts[0], counts[1], False))
            active.append((sk, found))
        market = scopes.get(_MARKET)
        market_share = config.prior_share
        m_base_total = 0.0
        market_spans: dict[int, tuple[int, int]] = {}
        if market is not None:
            m_base_total, m_bearish = market.baseline_at(window_first, decay)
            market_share = (m_bearish + config.prior_items * config.prior_share) / (
                m_base_total + config.prior_items
            )
            market_spans = {n: _span(market.recent, t, n) for n in spans}
        warm = market is not None and window_first - market.first_seen >= warmup
        judged: list[_Judged] = []
        explained: dict[int, int] = {}  # span -> excess bearish of the most anomalous scope
        explained_p = 1.0
        for sk, ws in active:
            if sk == _MARKET or not warm:
                continue
            j = _judge_scope(
                sk, ws, t, window_first, decay, config, spans, market_share, m_base_total, market_spans
            )
            if j is None:
                continue
            judged.append(j)
            if j.p_surge <= config.p_learn and j.p_surge < explained_p:
                explained_p, explained = j.p_surge, j.excess
        if market is not None and warm and _MARKET in schedule[t]:
            j = _judge_market(
                market, t, window_first, decay, config, spans, rate, rate_decay, rate_min, explained
            )
            if j is not None:
                judged.insert(0, j)
        for j in judged:
            ws = scopes[j.sk]
            p_value = min(j.p_share, j.p_surge)
            if p_value <= config.p_learn:
                ws.mark_anomalous(t, max_exclusion)
            severity = _severity(p_value, config)
            if severity is None:
                continue
            evidence: list[str] = []
            for start, _, n_bearish, _ in ws.recent:
                if n_bearish:
                    evidence.extend(ids.get((j.sk[0], j.sk[1], _time(start, width)), ()))
            tests = tuple(
                name for name, p in (("share", j.p_share), ("surge", j.p_surge)) if p <= config.p_warning
            )
            detections.append(
                Detection(
                    rule=config.rule,
                    scope=j.sk[0],
                    key=j.sk[1],
                    window_start=_time(window_first, width),
                    window_end=_time(t + 1, width),
                    total=j.total,
                    bearish=j.bearish,
                    baseline_share=j.share,
                    baseline_items=j.base_total,
                    expected_bearish=j.total * j.share,
                    z_score=j.z_score,
                    p_value=p_value,
                    severity=severity,
                    event_ids=tuple(evidence[: config.max_event_ids]),
                    tests=cast(tuple[Test, ...], tests),
                    p_share=j.p_share,
                    p_surge=j.p_surge,
                    usual_bearish=j.usual,
                    surge_minutes=j.surge_span * (width / timedelta(minutes=1)),
                )
            )

    # Buckets that no future window can include go into the baseline now, so the state
    # stays small (at most W-1 buckets per scope) and is the same however calls are split.
    for sk, ws in scopes.items():
        if sk == _MARKET:
            rate.advance(ws, end - w_len + 1, rate_decay)
        ws.fold_before(end - w_len + 1, decay)
    final = DetectorState(
        evaluated_until=until if begin is not None or new else state.evaluated_until,
        scopes={sk: _to_state(ws, width) for sk, ws in scopes.items()},
        market_rate=rate.to_state(width),
    )
    return DetectionRun(detections=detections, state=final)
