"""The dispatcher's health, decided from a snapshot of its state (pure, no I/O).

The contract every service's `/health` shares (`services.probes.HealthReport`): the HTTP
code alone tells a probe what to do. `starting` until the first cycle has finished,
`degraded` while the database is unreachable or when no cycle has finished for
`stall_seconds` (a hung send, a stuck loop), `ok` otherwise. Failing receivers do not
make the dispatcher unhealthy: they are the receivers' problem, visible in the delivery
metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.probes import HealthReport, Status, iso_timestamp


@dataclass(frozen=True, slots=True)
class DispatcherSnapshot:
    last_cycle_at: float | None  # unix seconds of the last finished cycle
    database_failing: bool
    database_errors: int
    pending: int | None
    delivered: int
    dead: int
    started_at: float
    now: float
    stall_seconds: float


def dispatcher_status(snap: DispatcherSnapshot) -> Status:
    if snap.database_failing:
        return "degraded"
    if snap.last_cycle_at is None:
        return "degraded" if snap.now - snap.started_at > snap.stall_seconds else "starting"
    if snap.now - snap.last_cycle_at > snap.stall_seconds:
        return "degraded"
    return "ok"


def dispatcher_health(snap: DispatcherSnapshot) -> HealthReport:
    status = dispatcher_status(snap)
    body: dict[str, Any] = {
        "status": status,
        "database": "failing" if snap.database_failing else "ok",
        "last_cycle_at": iso_timestamp(snap.last_cycle_at),
        "pending_deliveries": snap.pending,
        "delivered": snap.delivered,
        "dead": snap.dead,
        "database_errors": snap.database_errors,
        "uptime_seconds": round(max(0.0, snap.now - snap.started_at), 1),
    }
    return HealthReport(status, body)
