"""Prometheus metrics of the dispatcher, and the state its `/health` is built from.

Own `CollectorRegistry` per instance (as `ScorerMetrics`), so tests can hold several.
Everything is recorded from the dispatcher's main thread; sends run in a pool but their
results are recorded after they return.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.delivery.health import DispatcherSnapshot
from services.delivery.model import CHANNELS

OUTCOMES = ("delivered", "failed", "dead")
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class DispatcherMetrics:
    def __init__(self, *, stall_seconds: float = 120.0, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.stall_seconds = stall_seconds
        self.registry = CollectorRegistry()
        r = self.registry
        self.outcomes = Counter(
            "finsent_delivery_attempts",
            "Delivery attempts by channel and outcome: delivered, failed (will be retried), dead (gave up)",
            ["channel", "outcome"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "finsent_delivery_attempt_seconds",
            "Duration of one send (HTTP request, SMTP session, log write)",
            ["channel"],
            buckets=ATTEMPT_BUCKETS,
            registry=r,
        )
        self.fanned_out = Counter(
            "finsent_dispatcher_deliveries_created",
            "Deliveries created by fan-out of outbox rows",
            registry=r,
        )
        self.pending = Gauge(
            "finsent_dispatcher_pending_deliveries", "Deliveries not yet finished", registry=r
        )
        self.database_errors = Counter(
            "finsent_dispatcher_database_errors", "Dispatcher cycles that failed on the database", registry=r
        )
        self.last_cycle = Gauge(
            "finsent_dispatcher_last_cycle_timestamp_seconds",
            "Unix time of the last finished cycle",
            registry=r,
        )
        for channel in CHANNELS:  # present from the first scrape, so rate() sees the first event
            self.attempt_seconds.labels(channel=channel)
            for outcome in OUTCOMES:
                self.outcomes.labels(channel=channel, outcome=outcome)
        self._last_cycle_at: float | None = None
        self._database_failing = False
        self._database_error_count = 0
        self._pending: int | None = None
        self._delivered = 0
        self._dead = 0
        self._started_at = clock()

    def attempt(self, channel: str, outcome: str, seconds: float, deliveries: int = 1) -> None:
        """One send; `deliveries` > 1 for a digest (each member counts)."""
        self.outcomes.labels(channel=channel, outcome=outcome).inc(deliveries)
        self.attempt_seconds.labels(channel=channel).observe(seconds)
        if outcome == "delivered":
            self._delivered += deliveries
        elif outcome == "dead":
            self._dead += deliveries

    def created(self, deliveries: int) -> None:
        self.fanned_out.inc(deliveries)

    def cycle_done(self, pending: int) -> None:
        self._database_failing = False
        self._pending = pending
        self.pending.set(pending)
        self._last_cycle_at = self._clock()
        self.last_cycle.set(self._last_cycle_at)

    def database_error(self) -> None:
        self._database_failing = True
        self._database_error_count += 1
        self.database_errors.inc()

    def snapshot(self) -> DispatcherSnapshot:
        return DispatcherSnapshot(
            last_cycle_at=self._last_cycle_at,
            database_failing=self._database_failing,
            database_errors=self._database_error_count,
            pending=self._pending,
            delivered=self._delivered,
            dead=self._dead,
            started_at=self._started_at,
            now=self._clock(),
            stall_seconds=self.stall_seconds,
        )
