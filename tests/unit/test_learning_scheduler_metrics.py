"""The scheduler's `/health` (services.learning.scheduler_metrics): the shared contract of
services.probes, with the alerter's roles — active `ok`, `standby` — and 503 while the
database cannot be reached or the lock loop stalled."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.learning.scheduler_metrics import SchedulerMetrics, SchedulerSnapshot, scheduler_health


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def snapshot(**changes: object) -> SchedulerSnapshot:
    base: dict[str, object] = {
        "role": "active",
        "database_failing": False,
        "last_check_at": 1_000.0,
        "next_run_at": 5_000.0,
        "started_at": 900.0,
        "now": 1_010.0,
        "stall_seconds": 120.0,
    }
    return SchedulerSnapshot(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({}, "ok", 200),
        ({"role": "standby", "next_run_at": None}, "standby", 200),
        ({"role": "starting", "last_check_at": None}, "starting", 503),
        ({"database_failing": True}, "degraded", 503),
        # a standby that cannot reach the database could not take over either
        ({"role": "standby", "database_failing": True}, "degraded", 503),
        ({"now": 1_000.0 + 121.0}, "degraded", 503),  # the lock loop has not come round
        ({"role": "starting", "last_check_at": None, "now": 900.0 + 121.0}, "degraded", 503),
    ],
)
def test_status_and_code(changes: dict[str, object], status: str, code: int) -> None:
    report = scheduler_health(snapshot(**changes))
    assert (report.status, report.http_status, report.body["status"]) == (status, code, status)


def test_body_explains_the_status() -> None:
    body = scheduler_health(snapshot(database_failing=True)).body
    assert body == {
        "status": "degraded",
        "role": "active",
        "database": "failing",
        "loop": "ok",
        "last_check_at": "1970-01-01T00:16:40.000+00:00",
        "next_run_at": "1970-01-01T01:23:20.000+00:00",
        "uptime_seconds": 110.0,
    }


def test_the_metrics_follow_the_scheduler_through_its_roles() -> None:
    clock = Clock()
    metrics = SchedulerMetrics(clock=clock, stall_seconds=60.0)
    assert metrics.health().status == "starting"
    metrics.standby()
    assert metrics.health().status == "standby"
    assert metrics.registry.get_sample_value("finsent_scheduler_active") == 0
    metrics.database_failed()  # the standby's try of the lock could not reach the database
    assert metrics.health().status == "degraded"
    metrics.checked()  # the next try reached it (the lock is still taken)
    assert metrics.health().status == "standby"
    metrics.became_active()
    due = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    metrics.next_run(due)
    report = metrics.health()
    assert (report.status, report.body["role"], report.body["next_run_at"]) == (
        "ok",
        "active",
        "2026-12-07T02:00:00.000+00:00",
    )
    assert metrics.registry.get_sample_value("finsent_scheduler_active") == 1
    assert (
        metrics.registry.get_sample_value("finsent_scheduler_next_run_timestamp_seconds") == due.timestamp()
    )
    clock.now += 61  # no check of the lock for longer than stall_seconds
    assert metrics.health().body["loop"] == "stalled"
    assert metrics.health().http_status == 503
    metrics.checked()
    assert metrics.health().status == "ok"
    # process collectors, as the global registry had them
    assert metrics.registry.get_sample_value("process_cpu_seconds_total") is not None
