"""The dispatcher's /health decision and its metrics' bookkeeping (pure)."""

from __future__ import annotations

from services.delivery.health import DispatcherSnapshot, dispatcher_health
from services.delivery.metrics import DispatcherMetrics


def snap(**fields: object) -> DispatcherSnapshot:
    base: dict[str, object] = {
        "last_cycle_at": 100.0,
        "database_failing": False,
        "database_errors": 0,
        "pending": 0,
        "delivered": 0,
        "dead": 0,
        "started_at": 50.0,
        "now": 101.0,
        "stall_seconds": 120.0,
    }
    return DispatcherSnapshot(**{**base, **fields})  # type: ignore[arg-type]


def test_health_states() -> None:
    assert (dispatcher_health(snap()).status, dispatcher_health(snap()).http_status) == ("ok", 200)
    assert dispatcher_health(snap(last_cycle_at=None)).status == "starting"
    assert dispatcher_health(snap(last_cycle_at=None, now=500.0)).status == "degraded"
    assert dispatcher_health(snap(database_failing=True)).http_status == 503
    assert dispatcher_health(snap(now=1000.0)).status == "degraded"  # stalled
    body = dispatcher_health(snap(last_cycle_at=0.0, now=1.0)).body
    assert body["last_cycle_at"] == "1970-01-01T00:00:00.000+00:00"


def test_metrics_feed_health() -> None:
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    metrics = DispatcherMetrics(clock=lambda: next(clock))
    assert metrics.snapshot().last_cycle_at is None
    metrics.attempt("webhook", "failed", 0.1)
    metrics.attempt("webhook", "delivered", 0.1, deliveries=3)
    metrics.attempt("email", "dead", 0.1)
    metrics.database_error()
    assert metrics.snapshot().database_failing
    metrics.cycle_done(pending=4)
    s = metrics.snapshot()
    assert (s.database_failing, s.pending, s.delivered, s.dead, s.database_errors) == (False, 4, 3, 1, 1)
    assert metrics.outcomes.labels(channel="webhook", outcome="delivered")._value.get() == 3
