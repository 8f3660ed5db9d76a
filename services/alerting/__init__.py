"""Negative-spike alerting: from scored stories to alerts, their messages and the analyst's
actions on them.

Pure logic, no I/O, exported here: `buckets` (event-time counts per scope), `detector` (the
spike tests), `lifecycle` (detections → alerts and notification actions), `clock` (the
alerter's event clock) and `message` (what the outbox carries). The I/O modules are imported
by name: `store` (the alerter's SQL, bound parameters, PostgreSQL and SQLite), `engine` (one
transaction per micro-batch: buckets → detector → lifecycle → alerts, outbox, checkpoint),
`service` (the Kafka loop of `finsent alerter`), `analyst` (the analyst's reads and writes:
acknowledge, close, reopen, mute; the dashboard and `finsent alerts` call it, and commit),
`metrics` (served by services.probes) and `config` (everything built from `Settings` in one
place). Imports nothing heavy: no torch, no faust.
"""

from services.alerting.buckets import (
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
from services.alerting.clock import EventClock
from services.alerting.detector import (
    SEVERITIES,
    SEVERITY_RANK,
    Detection,
    DetectionRun,
    DetectorConfig,
    DetectorState,
    RateProfile,
    ScopeState,
    Severity,
    betabinom_sf,
    detect,
    nbinom_sf,
)
from services.alerting.lifecycle import (
    MAX_MUTE_HOURS,
    Action,
    ActionKind,
    Alert,
    LifecycleConfig,
    LifecycleRun,
    LifecycleState,
    alert_key,
    apply,
    history_only,
    mute_until,
    unheard_reopens,
)
from services.alerting.message import (
    WITHDRAWN,
    Story,
    Withdrawal,
    alert_message,
    json_safe_evidence,
    message_event_ids,
    plain_text,
    what_happened,
    withdrawal_message,
)

__all__ = [
    "DEFAULT_WIDTH",
    "MARKET_KEY",
    "MAX_MUTE_HOURS",
    "SCOPES",
    "SEVERITIES",
    "SEVERITY_RANK",
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
    "RateProfile",
    "Scope",
    "ScopeState",
    "ScoredRow",
    "Severity",
    "Story",
    "WITHDRAWN",
    "Withdrawal",
    "aggregate",
    "alert_key",
    "alert_message",
    "apply",
    "bearish_event_ids",
    "betabinom_sf",
    "bucket_start",
    "buckets_from_rows",
    "detect",
    "history_only",
    "json_safe_evidence",
    "message_event_ids",
    "mute_until",
    "nbinom_sf",
    "plain_text",
    "scope_keys",
    "touched_starts",
    "unheard_reopens",
    "what_happened",
    "withdrawal_message",
]
