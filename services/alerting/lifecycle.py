"""Alert lifecycle: turns per-window detections into alerts and notification actions.

Pure state transitions, no I/O. A spike is detected in many consecutive sliding windows;
subscribers want to hear about it once, again only if it gets worse (or, optionally, as
a periodic reminder while it lasts), and once more when it is over. So:

- an alert opens on the first detection of a (rule, scope, key) and is identified by that
  detection's window start: `alert_key` = rule|scope|key|window_start, the same on every
  replay, so alert rows and their outbox entries are upserts;
- while open, a more severe detection escalates it (notify); with `renotify_every` set, a
  detection that long after the last notification re-notifies;
- it resolves at `last detection + resolve_after`, i.e. after that many consecutive
  normal one-minute windows (notify);
- for `cooldown` after a resolution, new detections of the same scope reopen the same
  alert silently (a flapping scope does not page twice) unless they are more severe than
  what was last notified, which escalates.

All times are event times taken from the detections (window ends), never the wall clock:
the actions, their times and their dedupe keys depend only on the detections, however
the stream is split between calls, so a replay produces the same actions and the outbox
can drop the duplicates by `Action.dedupe_key`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast

from services.alerting.buckets import SCOPES, Scope
from services.alerting.detector import SEVERITY_RANK, Detection, Severity

AlertStatus = Literal["open", "resolved"]
ActionKind = Literal["open", "escalate", "renotify", "reopen", "resolve"]
_KIND_RANK: Final[dict[str, int]] = {
    k: i for i, k in enumerate(("resolve", "open", "reopen", "escalate", "renotify"))
}
_SCOPE_RANK: Final[dict[str, int]] = {s: i for i, s in enumerate(SCOPES)}

AlertIdentity = tuple[str, Scope, str]  # (rule, scope, key): at most one live alert each


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    resolve_after: timedelta = timedelta(minutes=5)  # consecutive normal windows, as time
    cooldown: timedelta = timedelta(minutes=30)
    renotify_every: timedelta | None = None  # None: notify on open, escalation, resolution only

    def __post_init__(self) -> None:
        if self.resolve_after <= timedelta(0) or self.cooldown < timedelta(0):
            raise ValueError("resolve_after must be positive and cooldown not negative")
        if self.renotify_every is not None and self.renotify_every <= timedelta(0):
            raise ValueError("renotify_every must be positive (or None)")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert's current state (the `alerts` row, upserted by `alert_key`)."""

    alert_key: str
    rule: str
    scope: Scope
    key: str
    window_start: datetime  # of the detection that opened it
    opened_at: datetime  # that detection's window end
    last_detected_at: datetime  # window end of the latest detection
    severity: Severity  # the highest seen
    notified_severity: Severity
    last_notified_at: datetime
    detections: int  # windows detected while this alert was live
    status: AlertStatus = "open"
    resolved_at: datetime | None = None

    @property
    def identity(self) -> AlertIdentity:
        return (self.rule, self.scope, self.key)


@dataclass(frozen=True, slots=True)
class Action:
    """Something the service must record (and, if `notify`, deliver) for one alert."""

    kind: ActionKind
    alert: Alert  # the alert as it is after this action
    at: datetime  # event time of the transition
    notify: bool
    detection: Detection | None = None  # the evidence; None for a resolution

    @property
    def alert_key(self) -> str:
        return self.alert.alert_key

    @property
    def dedupe_key(self) -> str:
        """Idempotency key of this notification: identical on every replay."""
        return f"{self.alert.alert_key}|{self.kind}|{self.at.isoformat()}"


@dataclass(frozen=True, slots=True)
class LifecycleState:
    """Live alerts, plus resolved ones still inside their cooldown; JSON-serialisable."""

    alerts: Mapping[AlertIdentity, Alert] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"alerts": [_alert_to_dict(a) for _, a in sorted(self.alerts.items(), key=_identity_sort)]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LifecycleState:
        alerts = [_alert_from_dict(row) for row in data.get("alerts", [])]
        return cls(alerts={a.identity: a for a in alerts})


@dataclass(frozen=True, slots=True)
class LifecycleRun:
    actions: list[Action]
    state: LifecycleState


def alert_key(rule: str, scope: str, key: str, window_start: datetime) -> str:
    return f"{rule}|{scope}|{key}|{window_start.astimezone(UTC).isoformat()}"


def apply(
    state: LifecycleState | None,
    detections: Iterable[Detection],
    *,
    now: datetime,
    config: LifecycleConfig | None = None,
) -> LifecycleRun:
    """Advance every alert to event time `now` given the detections that closed since the
    previous call (window ends in (previous now, now], i.e. one `detect` run's output with
    `now` = its `until`). Returns the actions in event-time order and the new state.
    """
    config = config or LifecycleConfig()
    alerts: dict[AlertIdentity, Alert] = dict((state or LifecycleState()).alerts)
    actions: list[Action] = []
    grouped: dict[AlertIdentity, list[Detection]] = defaultdict(list)
    for d in detections:
        if d.window_end > now:
            raise ValueError(f"detection {d.dedupe_key} ends after now={now}")
        grouped[(d.rule, d.scope, d.key)].append(d)

    for identity, ds in grouped.items():
        for d in sorted(ds, key=lambda d: d.window_end):
            alert = alerts.get(identity)
            if alert is not None and alert.status == "open":
                resolve_at = alert.last_detected_at + config.resolve_after
                if d.window_end > resolve_at:
                    alert = _resolve(alert, resolve_at, actions)
            alerts[identity] = _on_detection(alert, d, config, actions)

    for identity, alert in list(alerts.items()):
        if alert.status == "open" and alert.last_detected_at + config.resolve_after <= now:
            alert = alerts[identity] = _resolve(alert, alert.last_detected_at + config.resolve_after, actions)
        # Past its cooldown a resolved alert can no longer influence anything.
        if alert.resolved_at is not None and alert.resolved_at + config.cooldown <= now:
            del alerts[identity]

    actions.sort(key=lambda a: (a.at, _SCOPE_RANK[a.alert.scope], a.alert.key, _KIND_RANK[a.kind]))
    return LifecycleRun(actions=actions, state=LifecycleState(alerts=alerts))


def history_only(
    actions: Iterable[Action], *, judged_until: datetime | None, notified: Iterable[str] = ()
) -> set[str]:
    """Keys of the alerts of `actions` that are history, not news: recorded, never notified.

    An alert is history when its whole life is in these actions — it opens, and it ends the
    step resolved — and it resolved at or before `judged_until`, the boundary up to which
    windows had been judged before this step (the past of the watermark: only a late
    story's re-run judges windows there again), and nothing of it was notified before
    (`notified`). A subscriber acts on what is happening; telling it now that something
    started and ended hours ago in event time is a false alarm when the re-run's history
    is still incomplete (a partition stalled behind a dead worker) and no use when it is
    not. An alert that is still open, or that resolves in the windows judged for the first
    time, is notified as always; so is one notified before (its resolution must follow its
    opening). `judged_until` None (the caller's choice: a replay, where every alert is
    history and the notifications are what the replay is for) makes nothing history.
    """
    if judged_until is None:
        return set()
    opened: set[str] = set()
    last: dict[str, Alert] = {}
    for action in actions:
        if action.kind == "open":
            opened.add(action.alert_key)
        last[action.alert_key] = action.alert
    past: set[str] = set()
    for key in opened - set(notified):
        resolved_at = last[key].resolved_at
        if last[key].status == "resolved" and resolved_at is not None and resolved_at <= judged_until:
            past.add(key)
    return past


def unheard_reopens(actions: Iterable[Action], *, heard: Iterable[str]) -> list[Action]:
    """The silent reopenings among `actions` of alerts subscribers never heard of, made to
    notify.

    A reopening within the cooldown is silent because the subscriber was told about the
    alert and its flapping is no news. An alert that was history (`history_only`) was never
    told: a new spike of its scope within the cooldown is news, so its reopening notifies.
    `heard`: the alerts with a notification, stored or among this step's."""
    known = set(heard)
    return [replace(a, notify=True) for a in actions if a.kind == "reopen" and a.alert_key not in known]


def _resolve(alert: Alert, at: datetime, actions: list[Action]) -> Alert:
    resolved = replace(alert, status="resolved", resolved_at=at)
    actions.append(Action(kind="resolve", alert=resolved, at=at, notify=True))
    return resolved


def _on_detection(alert: Alert | None, d: Detection, config: LifecycleConfig, actions: list[Action]) -> Alert:
    at = d.window_end
    if alert is None or (
        alert.status == "resolved"
        and alert.resolved_at is not None
        and at >= alert.resolved_at + config.cooldown
    ):
        opened = Alert(
            alert_key=alert_key(d.rule, d.scope, d.key, d.window_start),
            rule=d.rule,
            scope=d.scope,
            key=d.key,
            window_start=d.window_start,
            opened_at=at,
            last_detected_at=at,
            severity=d.severity,
            notified_severity=d.severity,
            last_notified_at=at,
            detections=1,
        )
        actions.append(Action(kind="open", alert=opened, at=at, notify=True, detection=d))
        return opened

    reopening = alert.status == "resolved"
    severity = d.severity if SEVERITY_RANK[d.severity] > SEVERITY_RANK[alert.severity] else alert.severity
    updated = replace(
        alert,
        status="open",
        resolved_at=None,
        last_detected_at=at,
        severity=severity,
        detections=alert.detections + 1,
    )
    if SEVERITY_RANK[d.severity] > SEVERITY_RANK[alert.notified_severity]:
        updated = replace(updated, notified_severity=d.severity, last_notified_at=at)
        actions.append(Action(kind="escalate", alert=updated, at=at, notify=True, detection=d))
    elif config.renotify_every is not None and at - alert.last_notified_at >= config.renotify_every:
        updated = replace(updated, last_notified_at=at)
        actions.append(Action(kind="renotify", alert=updated, at=at, notify=True, detection=d))
    elif reopening:
        actions.append(Action(kind="reopen", alert=updated, at=at, notify=False, detection=d))
    return updated


def _identity_sort(item: tuple[AlertIdentity, Alert]) -> tuple[str, int, str]:
    rule, scope, key = item[0]
    return (rule, _SCOPE_RANK[scope], key)


def _alert_to_dict(a: Alert) -> dict[str, Any]:
    return {
        "alert_key": a.alert_key,
        "rule": a.rule,
        "scope": a.scope,
        "key": a.key,
        "window_start": a.window_start.isoformat(),
        "opened_at": a.opened_at.isoformat(),
        "last_detected_at": a.last_detected_at.isoformat(),
        "severity": a.severity,
        "notified_severity": a.notified_severity,
        "last_notified_at": a.last_notified_at.isoformat(),
        "detections": a.detections,
        "status": a.status,
        "resolved_at": None if a.resolved_at is None else a.resolved_at.isoformat(),
    }


def _alert_from_dict(row: Mapping[str, Any]) -> Alert:
    def ts(value: str) -> datetime:
        return datetime.fromisoformat(value).astimezone(UTC)

    if row["scope"] not in _SCOPE_RANK or row["status"] not in ("open", "resolved"):
        raise ValueError(f"bad alert state row: {row!r}")
    for name in ("severity", "notified_severity"):
        if row[name] not in SEVERITY_RANK:
            raise ValueError(f"bad severity {row[name]!r} in alert state")
    return Alert(
        alert_key=str(row["alert_key"]),
        rule=str(row["rule"]),
        scope=cast(Scope, row["scope"]),
        key=str(row["key"]),
        window_start=ts(row["window_start"]),
        opened_at=ts(row["opened_at"]),
        last_detected_at=ts(row["last_detected_at"]),
        severity=cast(Severity, row["severity"]),
        notified_severity=cast(Severity, row["notified_severity"]),
        last_notified_at=ts(row["last_notified_at"]),
        detections=int(row["detections"]),
        status=cast(AlertStatus, row["status"]),
        resolved_at=None if row["resolved_at"] is None else ts(row["resolved_at"]),
    )


# --------------------------------------------------------------------------- the analyst's mute

MAX_MUTE_HOURS: Final = 24 * 30


def mute_until(now: datetime, hours: float) -> datetime:
    """When an analyst's mute of `hours` from `now` ends. Bounded (0 < hours <= 30 days) so a
    typo cannot silence an alert for good; muting is the analyst's, so it never changes the
    alerter's own state above, only whether the dispatcher delivers."""
    if not 0 < hours <= MAX_MUTE_HOURS:
        raise ValueError(f"mute for 0 < hours <= {MAX_MUTE_HOURS}, got {hours}")
    return now + timedelta(hours=hours)
