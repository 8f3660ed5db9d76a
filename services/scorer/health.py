"""The worker's health, decided from a snapshot of its state (pure, no I/O).

Three states, chosen so that a readiness probe or a load balancer can act on the HTTP code
alone: `starting` (no partition assignment received yet: the worker is not consuming),
`degraded` (the database is unreachable and the batch in flight is being retried: the
stream is paused) and `ok`. An assignment of zero partitions is `ok`: a group with more
workers than partitions keeps idle standbys on purpose. The answer is the contract every
service's `/health` shares, `services.probes.HealthReport`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.probes import HealthReport, Status, iso_timestamp


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    model_version: str | None
    assigned: Sequence[tuple[str, int]] | None  # None: never assigned yet
    last_batch_at: float | None  # unix seconds
    database_retrying: bool
    storage_retries: int
    items_stored: int
    dead_letters: int
    started_at: float
    now: float
    model_refused: str | None = None  # the last champion this worker refused to load, and why


def health_status(snapshot: HealthSnapshot) -> Status:
    if snapshot.database_retrying:
        return "degraded"
    if snapshot.assigned is None:
        return "starting"
    return "ok"


def health_report(snapshot: HealthSnapshot) -> HealthReport:
    """The `/health` answer: 200 when `ok`, 503 otherwise, with a JSON body for humans."""
    status = health_status(snapshot)
    body: dict[str, Any] = {
        "status": status,
        "model_version": snapshot.model_version,
        "model_refused": snapshot.model_refused,
        "assigned_partitions": [
            {"topic": topic, "partition": partition} for topic, partition in sorted(snapshot.assigned or ())
        ],
        "last_batch_at": iso_timestamp(snapshot.last_batch_at),
        "database": "retrying" if snapshot.database_retrying else "ok",
        "storage_retries": snapshot.storage_retries,
        "items_stored": snapshot.items_stored,
        "dead_letters": snapshot.dead_letters,
        "uptime_seconds": round(max(0.0, snapshot.now - snapshot.started_at), 1),
    }
    return HealthReport(status, body)
