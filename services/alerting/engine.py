"""One alerter step inside one database transaction: buckets → detector → lifecycle → rows.

`AlertEngine.step` is the whole effect of a micro-batch of `news.scored` (or of an idle
tick) on the database; the service commits it, then commits the Kafka offsets, then
publishes the new outbox rows. No Kafka and no wall clock in here: the caller passes the
batch's bucket starts, the event-time boundary `until` from its `EventClock`, and `now`
(only used for the rows' bookkeeping timestamps and the messages' `created_at`).

Late stories. The detector judges each window once, in event-time order, and refuses a
bucket before its state's `evaluated_until`. When a batch changes such a bucket (a story
published earlier than the watermark allowed for), the step re-runs detection and the
lifecycle from the newest checkpoint at or before that bucket up to the current boundary:
windows judged before get judged again over the corrected counts. Because detections,
alert keys and dedupe keys depend only on the bucket series, the re-run reproduces every
unaffected alert and notification exactly (upserts and ON CONFLICT DO NOTHING make the
repeats no-ops), adds what the late story caused, and marks `superseded` any alert the old
history opened that the new one does not. Checkpoints after the re-run's start are
replaced.

What a re-run tells subscribers. In a live stream, an alert the re-run opens and resolves in
windows judged before (the past of the watermark), never notified, is recorded but not
notified (`lifecycle.history_only`): it is history, not news, and while a stalled partition
is still catching up the history it was judged on may be incomplete. An alert that was
notified and is then superseded gets a withdrawal (`message.withdrawal_message`, outbox kind
`withdrawn`), which the dispatcher delivers like any notification: the subscriber was told,
so it is told the alarm no longer stands.

A change only counts if the recomputed counts differ, so a replayed topic re-runs nothing.

A story older than every kept checkpoint (`checkpoint_retention` of event time, see
`store.prune_checkpoints`) still updates its bucket, but the windows around it are not
judged again: the step reports it (`too_late`) and the service logs it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.orm import Session

from services.alerting import (
    WITHDRAWN,
    Action,
    Alert,
    Detection,
    alert_message,
    apply,
    detect,
    history_only,
    json_safe_evidence,
    message_event_ids,
    store,
    unheard_reopens,
    withdrawal_message,
)
from services.alerting.config import AlerterConfig

log = logging.getLogger(__name__)

# One checkpoint kept per 10 minutes of event time (and always the newest): a late story
# is re-judged from at most ~20 minutes before its bucket, and the table stays small.
CHECKPOINT_SPACING: Final = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step did; the service turns it into metrics and log lines."""

    buckets_changed: int = 0
    evaluated_from: datetime | None = None  # the checkpoint the detector continued from
    evaluated_until: datetime | None = None  # the checkpoint written (None: nothing judged)
    rerun_from: datetime | None = None  # set when a late story made windows be judged again
    too_late: datetime | None = None  # earliest changed bucket that could not be re-judged
    detections: int = 0
    actions: list[Action] = field(default_factory=list)
    outbox: list[str] = field(default_factory=list)  # dedupe keys newly inserted
    superseded: list[str] = field(default_factory=list)
    history_only: list[str] = field(default_factory=list)  # alerts recorded but not notified
    open_alerts: int | None = None  # live alerts in the lifecycle state after the step


class AlertEngine:
    def __init__(self, config: AlerterConfig) -> None:
        self.config = config

    def step(
        self,
        session: Session,
        *,
        touched: Iterable[datetime],
        until: datetime | None,
        now: datetime,
        event_ids: Iterable[str] = (),
        live: bool = False,
    ) -> StepResult:
        """Recompute the buckets starting at `touched`, judge every window that closes by
        `until` (re-judging windows a late story changed), and write alerts, outbox rows and
        the checkpoint. The caller commits (or rolls back) the session. Counting stories,
        `event_ids` (the batch's items) add the buckets of their stories' other items.
        `live`: the stream is live (`EventClock.live`); only then is an alert that a re-run
        opens and resolves in the past of the watermark left unnotified (`history_only`)."""
        cfg = self.config
        rule, width = cfg.rule, cfg.bucket_width
        starts = set(touched)
        if cfg.count == "stories":
            starts |= store.story_spread(session, event_ids, width=width)
        changes = store.recompute_buckets(session, starts=starts, width=width, now=now, count=cfg.count)
        latest = store.latest_checkpoint(session, rule=rule)
        evaluated = latest.evaluated_until if latest is not None else None

        base = latest
        rerun_from: datetime | None = None
        too_late: datetime | None = None
        late = [start for start in changes.starts if evaluated is not None and start < evaluated]
        for bucket in late:  # from the oldest changed bucket that can be judged again
            found = store.checkpoint_at_or_before(session, rule=rule, at=bucket)
            if found is not None:
                base, rerun_from = found, found.evaluated_until
                break
            if evaluated is not None and bucket >= evaluated - cfg.checkpoint_retention:
                # no checkpoint that old was ever pruned (see store.prune_checkpoints): the
                # history starts after it, so the empty initial state over every stored
                # bucket is the exact re-run, and it covers every late bucket
                base, rerun_from, too_late = None, bucket, None
                break
            too_late = too_late or bucket

        target = evaluated
        if until is not None and (target is None or until > target):
            target = until
        result = StepResult(buckets_changed=len(changes), rerun_from=rerun_from, too_late=too_late)
        if target is None or (base is latest and target == evaluated):
            return result  # nothing new to judge

        start = base.evaluated_until if base is not None else None
        buckets = store.load_buckets(session, start=start, end=target, width=width)
        if base is None and not buckets:
            return result
        run = detect(
            buckets,
            until=target,
            config=cfg.detector,
            state=base.detector if base is not None else None,
        )
        detections = store.attach_evidence(
            session, run.detections, width=width, max_ids=cfg.detector.max_event_ids, count=cfg.count
        )
        lifecycle = apply(
            base.lifecycle if base is not None else None, detections, now=target, config=cfg.lifecycle
        )

        written = self._write_alerts(session, detections, lifecycle.actions, lifecycle.state.alerts, now)
        judged_until = evaluated if live and base is not latest else None
        past = history_only(lifecycle.actions, judged_until=judged_until)
        if past:  # nothing of them notified before (a replay of the re-run) either
            notified = store.notified_alert_keys(session, past)
            past = history_only(lifecycle.actions, judged_until=judged_until, notified=notified)
        notify = [a for a in lifecycle.actions if a.notify and a.alert_key not in past]
        reopened = {a.alert_key for a in lifecycle.actions if a.kind == "reopen"} - past
        if reopened:  # a history alert reopened by news: the subscriber never heard of it
            heard = store.notified_alert_keys(session, reopened) | {a.alert_key for a in notify} | past
            promoted = {a.dedupe_key: a for a in unheard_reopens(lifecycle.actions, heard=heard)}
            notify = [
                promoted.get(a.dedupe_key, a)
                for a in lifecycle.actions
                if a.dedupe_key in promoted or (a.notify and a.alert_key not in past)
            ]
        outbox = self._write_outbox(session, detections, notify, now)
        superseded: list[str] = []
        if base is not latest:
            store.drop_checkpoints_after(session, rule=rule, after=start)
            superseded = store.supersede_alerts(session, rule=rule, opened_after=start, keep=written, now=now)
            outbox += self._write_withdrawals(session, superseded, at=target, now=now)
        checkpoint = store.Checkpoint(evaluated_until=target, detector=run.state, lifecycle=lifecycle.state)
        store.save_checkpoint(session, rule=rule, checkpoint=checkpoint, now=now)
        store.thin_checkpoints(session, rule=rule, newest=target, spacing=CHECKPOINT_SPACING)
        store.prune_checkpoints(session, rule=rule, keep_from=target - cfg.checkpoint_retention)
        return StepResult(
            buckets_changed=len(changes),
            evaluated_from=start,
            evaluated_until=target,
            rerun_from=rerun_from,
            too_late=too_late,
            detections=len(detections),
            actions=lifecycle.actions,
            outbox=outbox,
            superseded=superseded,
            history_only=sorted(past),
            open_alerts=sum(1 for a in lifecycle.state.alerts.values() if a.status == "open"),
        )

    # ------------------------------------------------------------------ writes

    def _write_alerts(
        self,
        session: Session,
        detections: list[Detection],
        actions: list[Action],
        live: Mapping[Any, Alert],
        now: datetime,
    ) -> set[str]:
        """Upsert the alerts of this step's actions and every alert of the lifecycle state
        (live or cooling down: a handful), each with its final state and, if its latest
        detection is from this step, that detection's evidence; returns their keys.

        Not only the actions' alerts: a detection that notifies nobody still moves an open
        alert's `last_detected_at` and detection count, and after a late story's re-run an
        alert's whole history since the checkpoint may differ from what is stored."""
        latest: dict[str, Alert] = {}
        for action in actions:
            latest[action.alert_key] = action.alert
        for alert in live.values():
            latest[alert.alert_key] = alert
        by_end = {(d.rule, d.scope, d.key, d.window_end): d for d in detections}
        rows: list[tuple[Alert, Mapping[str, Any] | None]] = []
        for alert in latest.values():
            d = by_end.get((alert.rule, alert.scope, alert.key, alert.last_detected_at))
            rows.append((alert, None if d is None else json_safe_evidence(d.to_dict())))
        store.upsert_alerts(session, alerts=rows, now=now)
        return set(latest)

    def _write_withdrawals(
        self, session: Session, superseded: list[str], *, at: datetime, now: datetime
    ) -> list[str]:
        """A withdrawal for each superseded alert that was notified: the subscriber was told,
        so it must be told the alarm no longer stands. One per alert (its dedupe key)."""
        entries = [
            store.OutboxEntry(
                dedupe_key=w.dedupe_key,
                alert_key=w.alert_key,
                kind=WITHDRAWN,
                severity=w.severity,
                scope=w.scope,
                key=w.key,
                at=at,
                payload=withdrawal_message(w, at=at, created_at=now),
            )
            for w in store.notified_alerts(session, superseded)
        ]
        return store.insert_outbox(session, entries=entries, now=now)

    def _write_outbox(
        self, session: Session, detections: list[Detection], notify: list[Action], now: datetime
    ) -> list[str]:
        """Outbox rows for `notify`, the actions to be notified."""
        if not notify:
            return []
        stored = store.stored_evidence(session, [a.alert_key for a in notify if a.detection is None])
        by_end = {(d.rule, d.scope, d.key, d.window_end): d for d in detections}
        evidence: list[Mapping[str, Any]] = []
        for action in notify:
            if action.detection is not None:
                evidence.append(json_safe_evidence(action.detection.to_dict()))
                continue
            # a resolution cites the alert's last detection: from this step, or as stored
            alert = action.alert
            d = by_end.get((alert.rule, alert.scope, alert.key, alert.last_detected_at))
            evidence.append(
                json_safe_evidence(d.to_dict()) if d is not None else stored.get(alert.alert_key, {})
            )
        ids = [e for ev in evidence for e in message_event_ids(ev)]
        stories = store.load_story_texts(session, ids)
        entries = [
            store.OutboxEntry(
                dedupe_key=action.dedupe_key,
                alert_key=action.alert_key,
                kind=action.kind,
                severity=action.alert.severity,
                scope=action.alert.scope,
                key=action.alert.key,
                at=action.at,
                payload=alert_message(action, evidence=ev, stories=stories, created_at=now),
            )
            for action, ev in zip(notify, evidence, strict=True)
        ]
        return store.insert_outbox(session, entries=entries, now=now)
