"""The worker's health, decided from a snapshot of its state (pure, no I/O).

Three states, chosen so that a readiness probe or a load balancer can act on the HTTP code
alone: `starting` (no partition assignment received yet: the worker is not consuming),
`degraded` (the database is unreachable and the batch in flight is being retried: the
stream is paused) and `ok`. An assignment of zero partitions is `ok`: a group with more
workers than partitions keeps idle standbys on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["ok", "degraded", "starting"]
HTTP_OK = 200
HTTP_UNAVAILABLE = 503


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


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: Status
    http_status: int
    body: dict[str, Any]


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
        "last_batch_at": _iso(snapshot.last_batch_at),
        "database": "retrying" if snapshot.database_retrying else "ok",
        "storage_retries": snapshot.storage_retries,
        "items_stored": snapshot.items_stored,
        "dead_letters": snapshot.dead_letters,
        "uptime_seconds": round(max(0.0, snapshot.now - snapshot.started_at), 1),
    }
    return HealthReport(status, HTTP_OK if status == "ok" else HTTP_UNAVAILABLE, body)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
