"""Negative-spike alerting, pure logic: event-time buckets, the spike detector, the alert
lifecycle, the alerter's event clock and the alert message. No I/O here; the storage layer
and the alerter service (`services.alerting`) wrap these functions.
"""

from services.alerts.buckets import (
    DEFAULT_WIDTH,
    MARKET_KEY,
    SCOPES,
    BucketCounts,
    BucketKey,
    Scope,
    ScoredRow,
    aggregate,
    bearish_event_ids,
    bucket_start,
    buckets_from_rows,
    scope_keys,
    touched_starts,
)
from services.alerts.clock import EventClock
from services.alerts.detector import (
    SEVERITIES,
    Detection,
    DetectionRun,
    DetectorConfig,
    DetectorState,
    ScopeState,
    Severity,
    betabinom_sf,
    detect,
)
from services.alerts.lifecycle import (
    Action,
    ActionKind,
    Alert,
    LifecycleConfig,
    LifecycleRun,
    LifecycleState,
    alert_key,
    apply,
)
from services.alerts.message import Story, alert_message, json_safe_evidence, plain_text

__all__ = [
    "DEFAULT_WIDTH",
    "MARKET_KEY",
    "SCOPES",
    "SEVERITIES",
    "Action",
    "ActionKind",
    "Alert",
    "BucketCounts",
    "BucketKey",
    "Detection",
    "DetectionRun",
    "DetectorConfig",
    "DetectorState",
    "EventClock",
    "LifecycleConfig",
    "LifecycleRun",
    "LifecycleState",
    "Scope",
    "ScopeState",
    "ScoredRow",
    "Severity",
    "Story",
    "aggregate",
    "alert_key",
    "alert_message",
    "apply",
    "bearish_event_ids",
    "betabinom_sf",
    "bucket_start",
    "buckets_from_rows",
    "detect",
    "json_safe_evidence",
    "plain_text",
    "scope_keys",
    "touched_starts",
]
