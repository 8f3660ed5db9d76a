"""The retraining scheduler's Prometheus metrics, and its `/health` decided from a snapshot
(pure; the contract every service shares, `services.probes.HealthReport`).

Like the alerter, the scheduler runs as replicas of which one holds the database lock: the
active one answers `ok`, the others `standby` (200 both: an orchestrator must keep a standby
running). `starting` until the lock was first tried. `degraded` (503) while the database
cannot be reached — whatever the role: a standby that cannot reach the database cannot take
over either — or when the loop that checks the lock has not come round for `stall_seconds`.
A failed retraining does not make the scheduler unhealthy: it is recorded in `retrain_runs`
and the next run is still scheduled.

Own `CollectorRegistry` per instance (with the process collectors the global one has), so
tests can hold several; written by the scheduler's loop, read by the probe server's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Gauge, GCCollector, PlatformCollector, ProcessCollector

from services.probes import HealthReport, Status, iso_timestamp

Role = Literal["starting", "active", "standby"]


@dataclass(frozen=True, slots=True)
class SchedulerSnapshot:
    role: Role
    database_failing: bool
    last_check_at: float | None  # unix seconds the lock was last checked (or tried) on the database
    next_run_at: float | None  # unix seconds the retraining is due (active only)
    started_at: float
    now: float
    stall_seconds: float


def scheduler_health(s: SchedulerSnapshot) -> HealthReport:
    """`degraded` when the database is away or the lock loop stalled, else the role's status:
    `ok` (active), `standby`, `starting`."""
    since = s.last_check_at if s.last_check_at is not None else s.started_at
    stalled = s.now - since > s.stall_seconds
    status: Status
    if s.database_failing or stalled:
        status = "degraded"
    elif s.role == "active":
        status = "ok"
    else:
        status = s.role
    body: dict[str, Any] = {
        "status": status,
        "role": s.role,
        "database": "failing" if s.database_failing else "ok",
        "loop": "stalled" if stalled else "ok",
        "last_check_at": iso_timestamp(s.last_check_at),
        "next_run_at": iso_timestamp(s.next_run_at),
        "uptime_seconds": round(max(0.0, s.now - s.started_at), 1),
    }
    return HealthReport(status, body)


class SchedulerMetrics:
    """`finsent_scheduler_next_run_timestamp_seconds`, `finsent_scheduler_active`, the process
    collectors; `registry` is what `/metrics` exposes, `health()` what `/health` answers."""

    def __init__(self, *, clock: Callable[[], float] = time.time, stall_seconds: float = 120.0) -> None:
        self._clock = clock
        self._stall_seconds = stall_seconds
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self._next_run = Gauge(
            "finsent_scheduler_next_run_timestamp_seconds",
            "When the next retraining is due (unix time)",
            registry=self.registry,
        )
        self._active = Gauge(
            "finsent_scheduler_active",
            "1 while this scheduler holds the database lock, 0 on standby",
            registry=self.registry,
        )
        self._started_at = clock()
        self._role: Role = "starting"
        self._database_failing = False
        self._last_check_at: float | None = None
        self._next_run_at: float | None = None

    def became_active(self) -> None:
        self._role = "active"
        self._active.set(1)
        self.checked()

    def standby(self) -> None:
        self._role = "standby"
        self._active.set(0)
        self._next_run_at = None
        self.checked()

    def checked(self) -> None:
        """The lock was checked or tried on the database: it answered."""
        self._database_failing = False
        self._last_check_at = self._clock()

    def database_failed(self) -> None:
        """The database could not be reached to check or try the lock (the loop still came round)."""
        self._database_failing = True
        self._last_check_at = self._clock()

    def next_run(self, at: datetime | None) -> None:
        self._next_run_at = None if at is None else at.timestamp()
        if at is not None:
            self._next_run.set(at.timestamp())

    def snapshot(self) -> SchedulerSnapshot:
        return SchedulerSnapshot(
            role=self._role,
            database_failing=self._database_failing,
            last_check_at=self._last_check_at,
            next_run_at=self._next_run_at,
            started_at=self._started_at,
            now=self._clock(),
            stall_seconds=self._stall_seconds,
        )

    def health(self) -> HealthReport:
        return scheduler_health(self.snapshot())
