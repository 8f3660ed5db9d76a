"""The alerter's Prometheus metrics, and its `/health` decided from a snapshot (pure; the
contract every service shares, `services.probes.HealthReport`).

Own `CollectorRegistry` per instance, like `ScorerMetrics`, so tests can hold several.
The alerter's loop is synchronous and the HTTP server answers from another thread, so a
loop stuck in one place would not stop `/health` from answering: the snapshot carries
when the loop last came round, and a loop silent for `stall_seconds` is `degraded`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.probes import HealthReport, Status, iso_timestamp

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class AlerterSnapshot:
    standby: bool  # waiting for the lock another alerter holds
    assigned: tuple[tuple[str, int], ...] | None  # None: the group has not assigned anything yet
    database_retrying: bool
    last_loop_at: float | None  # unix seconds
    last_step_at: float | None
    evaluated_until: datetime | None  # event time judged up to
    newest_event: datetime | None
    live: bool
    open_alerts: int | None
    messages: int
    started_at: float
    now: float
    stall_seconds: float


def alerter_health(s: AlerterSnapshot) -> HealthReport:
    """200 when `ok`, and when `standby` (healthy, waiting to take over: an orchestrator
    must keep it running); 503 while `starting` (no assignment yet) or `degraded` (database
    away, or the loop has not come round for `stall_seconds`)."""
    stalled = s.last_loop_at is not None and s.now - s.last_loop_at > s.stall_seconds
    status: Status
    if s.standby:
        status = "standby"
    elif s.database_retrying or stalled:
        status = "degraded"
    elif s.assigned is None:
        status = "starting"
    else:
        status = "ok"
    body: dict[str, Any] = {
        "status": status,
        "role": "standby" if s.standby else "active",
        "assigned_partitions": [{"topic": t, "partition": p} for t, p in sorted(s.assigned or ())],
        "database": "retrying" if s.database_retrying else "ok",
        "loop": "stalled" if stalled else "ok",
        "evaluated_until": None if s.evaluated_until is None else s.evaluated_until.isoformat(),
        "newest_event": None if s.newest_event is None else s.newest_event.isoformat(),
        "live": s.live,
        "open_alerts": s.open_alerts,
        "messages": s.messages,
        "last_step_at": iso_timestamp(s.last_step_at),
        "uptime_seconds": round(max(0.0, s.now - s.started_at), 1),
    }
    return HealthReport(status, body)


class AlerterMetrics:
    """Metrics of one alerter; `registry` is what `/metrics` exposes.

    Written by the alerter's loop only; the server thread reads. prometheus_client is
    thread-safe, and the health fields are each replaced in one assignment."""

    def __init__(self, *, clock: Callable[[], float] = time.time, stall_seconds: float = 120.0) -> None:
        self._clock = clock
        self.stall_seconds = stall_seconds
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "finsent_alerter_messages", "news.scored messages processed and committed", registry=r
        )
        self.dead_letters = Counter(
            "finsent_alerter_dead_letters",
            "news.scored messages that could not be read (sent to the DLQ)",
            registry=r,
        )
        self.buckets = Counter(
            "finsent_alerter_buckets_upserted",
            "Sentiment buckets written: recomputed counts that changed (a replay writes none)",
            registry=r,
        )
        self.opened = Counter(
            "finsent_alerter_alerts_opened", "Alerts opened", ["scope", "severity"], registry=r
        )
        self.escalated = Counter(
            "finsent_alerter_alerts_escalated",
            "Alerts escalated to a higher severity",
            ["scope", "severity"],
            registry=r,
        )
        self.resolved = Counter(
            "finsent_alerter_alerts_resolved",
            "Alerts resolved (severity: the highest seen)",
            ["scope", "severity"],
            registry=r,
        )
        self.outbox = Counter(
            "finsent_alerter_outbox_rows",
            "Notifications written to the outbox (new rows only)",
            ["kind"],
            registry=r,
        )
        self.published = Counter(
            "finsent_alerter_published", "Outbox rows published to the alerts topic", registry=r
        )
        self.reruns = Counter(
            "finsent_alerter_late_reruns",
            "Steps that judged windows again because a late story changed an already judged bucket",
            registry=r,
        )
        self.too_late = Counter(
            "finsent_alerter_too_late",
            "Steps with a story older than every kept checkpoint (its bucket updated, windows not re-judged)",
            registry=r,
        )
        self.superseded = Counter(
            "finsent_alerter_alerts_superseded",
            "Alerts a late story's re-run did not raise again",
            registry=r,
        )
        self.storage_retries = Counter(
            "finsent_alerter_storage_retries",
            "Transactions that failed on the connection and were retried",
            registry=r,
        )
        self.step_seconds = Histogram(
            "finsent_alerter_step_seconds",
            "Duration of one alerter transaction",
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.watermark_lag = Gauge(
            "finsent_alerter_watermark_lag_seconds",
            "Wall clock minus the event time judged up to; grows without bound on a replay of old news",
            registry=r,
        )
        self.evaluated_until = Gauge(
            "finsent_alerter_evaluated_until_timestamp_seconds",
            "Event time judged up to (unix seconds)",
            registry=r,
        )
        self.open_alerts = Gauge("finsent_alerter_open_alerts", "Alerts open after the last step", registry=r)
        self.assigned_partitions = Gauge(
            "finsent_alerter_assigned_partitions",
            "news.scored partitions assigned to the alerter",
            registry=r,
        )
        self.active = Gauge(
            "finsent_alerter_active",
            "1 while this alerter holds the database lock and works, 0 while it is on standby",
            registry=r,
        )
        self._standby = False
        self._assigned: tuple[tuple[str, int], ...] | None = None
        self._database_retrying = False
        self._last_loop_at: float | None = None
        self._last_step_at: float | None = None
        self._evaluated_until: datetime | None = None
        self._newest: datetime | None = None
        self._live = False
        self._open: int | None = None
        self._messages = 0
        self._started_at = clock()

    # ------------------------------------------------------------------ events

    def standby(self) -> None:
        """Another alerter holds the lock: this one waits to take over."""
        self._standby = True
        self.active.set(0)
        self._assigned = None  # a standby reads nothing (after stepping down: no longer)
        self.assigned_partitions.set(0)

    def became_active(self) -> None:
        self._standby = False
        self._last_loop_at = None  # a stall is measured from this run's first pass
        self.active.set(1)

    def partitions_assigned(self, assigned: Iterable[tuple[str, int]]) -> None:
        self._assigned = tuple(sorted((t, p) for t, p in assigned))
        self.assigned_partitions.set(len(self._assigned))

    def loop(self, *, evaluated_until: datetime | None, newest: datetime | None, live: bool) -> None:
        """The loop came round (after a poll, processed or not)."""
        now = self._clock()
        self._last_loop_at = now
        self._newest, self._live = newest, live
        if evaluated_until is not None:
            self._evaluated_until = evaluated_until
            self.evaluated_until.set(evaluated_until.timestamp())
            self.watermark_lag.set(max(0.0, now - evaluated_until.timestamp()))

    def storage_retry(self) -> None:
        self.storage_retries.inc()
        self._database_retrying = True

    def step(
        self,
        *,
        seconds: float,
        buckets: int,
        actions: Iterable[tuple[str, str, str]],  # (kind, scope, severity)
        outbox: Iterable[str],  # kinds of new outbox rows
        rerun: bool,
        too_late: bool,
        superseded: int,
        open_alerts: int | None,
    ) -> None:
        """A transaction committed."""
        self._database_retrying = False
        self._last_step_at = self._clock()
        self.step_seconds.observe(seconds)
        self.buckets.inc(buckets)
        for kind, scope, severity in actions:
            counter = {"open": self.opened, "escalate": self.escalated, "resolve": self.resolved}.get(kind)
            if counter is not None:
                counter.labels(scope=scope, severity=severity).inc()
        for kind in outbox:
            self.outbox.labels(kind=kind).inc()
        if rerun:
            self.reruns.inc()
        if too_late:
            self.too_late.inc()
        self.superseded.inc(superseded)
        if open_alerts is not None:
            self._open = open_alerts
            self.open_alerts.set(open_alerts)

    def consumed(self, messages: int, dead: int) -> None:
        """Offsets committed for `messages` records, `dead` of them dead-lettered."""
        self._messages += messages
        self.messages.inc(messages)
        self.dead_letters.inc(dead)

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> AlerterSnapshot:
        return AlerterSnapshot(
            standby=self._standby,
            assigned=self._assigned,
            database_retrying=self._database_retrying,
            last_loop_at=self._last_loop_at,
            last_step_at=self._last_step_at,
            evaluated_until=self._evaluated_until,
            newest_event=self._newest,
            live=self._live,
            open_alerts=self._open,
            messages=self._messages,
            started_at=self._started_at,
            now=self._clock(),
            stall_seconds=self.stall_seconds,
        )

    def health(self) -> HealthReport:
        return alerter_health(self.snapshot())
