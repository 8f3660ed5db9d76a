"""The alerter's reads and writes (SQLAlchemy 2.0 Core, bound parameters only; PostgreSQL and
SQLite), all in the caller's session and transaction.

The alerter's whole effect on the database — bucket counts, alerts, outbox rows and the
checkpoint that says how far it got — is written in one transaction per micro-batch, so a
crash anywhere leaves either all of it or none of it, and the Kafka offsets (committed
after) are redelivered in the second case. Every write is an upsert keyed by something
deterministic (bucket identity, `alert_key`, `dedupe_key`, checkpoint time), so doing a
batch twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import RowMapping, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.alerting import (
    SCOPES,
    WITHDRAWN,
    Alert,
    BucketCounts,
    BucketKey,
    Detection,
    DetectorState,
    LifecycleState,
    Scope,
    Story,
    Withdrawal,
    aggregate,
    bearish_event_ids,
    bucket_start,
)
from services.storage.alert_models import AlerterCheckpointRow, AlertOutboxRow, AlertRow, SentimentBucketRow
from services.storage.models import NewsItemRow, PredictionRow
from services.storage.story_models import StoryMemberRow
from services.storage.story_queries import member_times, story_ids_of, story_summaries

log = logging.getLogger(__name__)

BUCKETS = cast(Table, SentimentBucketRow.__table__)
CHECKPOINTS = cast(Table, AlerterCheckpointRow.__table__)
ALERTS = cast(Table, AlertRow.__table__)
OUTBOX = cast(Table, AlertOutboxRow.__table__)

SUPERSEDED: Final = "superseded"  # alerts.status of an alert a late story's re-run did not raise again
_SCOPE_NAMES: Final[frozenset[str]] = frozenset(SCOPES)


def _insert(session: Session) -> Callable[[Table], Any]:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"the alerter's upserts are implemented for PostgreSQL and SQLite, not {name}")


def _scope(value: str) -> Scope:
    if value not in _SCOPE_NAMES:
        raise ValueError(f"unknown scope {value!r} in the database")
    return cast(Scope, value)


# --------------------------------------------------------------------------- stories


@dataclass(frozen=True, slots=True)
class StoryRow:
    """One story with the prediction the alerter counts (a `services.alerting.ScoredRow`)."""

    event_id: str
    published_at: datetime
    topic: str
    sentiment: str
    sentiment_score: float
    tickers: tuple[str, ...]


def contiguous_ranges(starts: Iterable[datetime], width: timedelta) -> list[tuple[datetime, datetime]]:
    """Bucket starts merged into [start, end) runs, so each run is one range query."""
    ranges: list[tuple[datetime, datetime]] = []
    for start in sorted(set(starts)):
        if ranges and ranges[-1][1] >= start:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], start + width))
        else:
            ranges.append((start, start + width))
    return ranges


def load_stories(
    session: Session, *, start: datetime, end: datetime, count: str = "stories"
) -> list[StoryRow]:
    """Stories published in [start, end), each with its first stored prediction.

    First stored (lowest prediction id) wins, as in the detector's contract: a model
    promoted later adds rows for new stories, it does not rewrite the counts of the past,
    and the choice is the same on every recomputation.

    `count="stories"` (FINSENT_ALERT_COUNT) keeps only the first item of each story
    (services.stories): re-published copies count once, in the bucket of the story's
    first item, with that item's prediction. `"items"` keeps every item.
    """
    stmt = (
        select(
            PredictionRow.event_id,
            PredictionRow.published_at,
            PredictionRow.topic,
            PredictionRow.sentiment,
            PredictionRow.sentiment_score,
            NewsItemRow.tickers,
        )
        .join(NewsItemRow, NewsItemRow.event_id == PredictionRow.event_id)
        .where(PredictionRow.published_at >= start, PredictionRow.published_at < end)
        .order_by(PredictionRow.id)
    )
    if count == "stories":
        stmt = stmt.outerjoin(StoryMemberRow, StoryMemberRow.event_id == PredictionRow.event_id).where(
            (StoryMemberRow.story_id.is_(None)) | (StoryMemberRow.story_id == PredictionRow.event_id)
        )
    elif count != "items":
        raise ValueError(f"count must be 'stories' or 'items', not {count!r}")
    stories: dict[str, StoryRow] = {}
    for event_id, published_at, topic, sentiment, score, tickers in session.execute(stmt).tuples():
        if event_id not in stories:
            stories[event_id] = StoryRow(
                event_id, published_at, topic, sentiment, float(score), tuple(str(t) for t in tickers or ())
            )
    return list(stories.values())


def load_story_texts(session: Session, event_ids: Iterable[str]) -> dict[str, Story]:
    """Headline, URL and time of each story, for alert messages."""
    ids = sorted(set(event_ids))
    if not ids:
        return {}
    stmt = select(
        NewsItemRow.event_id, NewsItemRow.headline, NewsItemRow.url, NewsItemRow.published_at
    ).where(NewsItemRow.event_id.in_(ids))
    return {e: Story(headline=h, url=u, published_at=p) for e, h, u, p in session.execute(stmt).tuples()}


# --------------------------------------------------------------------------- buckets


@dataclass(frozen=True, slots=True)
class BucketChanges:
    """What recomputing a batch's buckets changed (nothing, for a replayed batch)."""

    upserted: list[BucketCounts]
    removed: list[BucketKey]

    @property
    def starts(self) -> list[datetime]:
        """Bucket starts whose counts changed, oldest first."""
        return sorted({b.start for b in self.upserted} | {k[2] for k in self.removed})

    def __len__(self) -> int:
        return len(self.upserted) + len(self.removed)


def _same(a: BucketCounts, b: BucketCounts) -> bool:
    # score sums come from math.fsum over the same set of stories: equal bit for bit
    return (a.total, a.bearish, a.neutral, a.bullish, a.score_sum) == (
        b.total,
        b.bearish,
        b.neutral,
        b.bullish,
        b.score_sum,
    )


def recompute_buckets(
    session: Session, *, starts: Iterable[datetime], width: timedelta, now: datetime, count: str = "stories"
) -> BucketChanges:
    """Recompute every bucket (all scopes) that starts at one of `starts` from the stored
    predictions, and write the ones whose counts changed.

    Recomputing instead of incrementing is what makes a redelivered message count once and
    a late one count at all. Only changed rows are written, so a replay writes nothing, and
    the earliest changed bucket tells the caller whether already-judged windows moved.
    """
    width_s = int(width.total_seconds())
    wanted = set(starts)
    computed: dict[BucketKey, BucketCounts] = {}
    stored: dict[BucketKey, BucketCounts] = {}
    for start, end in contiguous_ranges(wanted, width):
        computed.update(aggregate(load_stories(session, start=start, end=end, count=count), width))
        rows = select(BUCKETS).where(
            BUCKETS.c.width_seconds == width_s, BUCKETS.c.bucket_start >= start, BUCKETS.c.bucket_start < end
        )
        for row in session.execute(rows).mappings():
            b = _bucket(row)
            stored[b.bucket_key] = b
    upserted = [b for k, b in computed.items() if k not in stored or not _same(b, stored[k])]
    removed = sorted((k for k in stored if k not in computed), key=lambda k: (k[2], k[0], k[1]))
    if upserted:
        insert = _insert(session)(BUCKETS)
        stmt = insert.on_conflict_do_update(
            index_elements=["scope", "key", "width_seconds", "bucket_start"],
            set_={
                c: insert.excluded[c]
                for c in ("total", "bearish", "neutral", "bullish", "score_sum", "updated_at")
            },
        )
        session.execute(
            stmt,
            [
                {
                    "scope": b.scope,
                    "key": b.key,
                    "width_seconds": width_s,
                    "bucket_start": b.start,
                    "total": b.total,
                    "bearish": b.bearish,
                    "neutral": b.neutral,
                    "bullish": b.bullish,
                    "score_sum": b.score_sum,
                    "updated_at": now,
                }
                for b in upserted
            ],
        )
    for scope, key, start in removed:  # a story was deleted: its scopes' counts go with it
        session.execute(
            delete(BUCKETS).where(
                BUCKETS.c.scope == scope,
                BUCKETS.c.key == key,
                BUCKETS.c.width_seconds == width_s,
                BUCKETS.c.bucket_start == start,
            )
        )
    return BucketChanges(upserted=upserted, removed=removed)


def story_spread(session: Session, event_ids: Iterable[str], *, width: timedelta) -> set[datetime]:
    """Bucket starts of every item of the stories of `event_ids`: a batch that merged two
    stories turned the later one's first item into a copy, and its bucket must be
    recomputed although no message of the batch is in it."""
    stories = set(story_ids_of(session, event_ids).values())
    return {bucket_start(t, width) for t in member_times(session, stories)}


def _bucket(row: RowMapping) -> BucketCounts:
    return BucketCounts(
        scope=_scope(row["scope"]),
        key=row["key"],
        start=row["bucket_start"],
        total=row["total"],
        bearish=row["bearish"],
        neutral=row["neutral"],
        bullish=row["bullish"],
        score_sum=row["score_sum"],
    )


def load_buckets(
    session: Session, *, start: datetime | None, end: datetime, width: timedelta
) -> list[BucketCounts]:
    """Stored non-empty buckets starting in [start, end) (from the first one if `start` is None),
    in series order: the detector's input."""
    stmt = select(BUCKETS).where(
        BUCKETS.c.width_seconds == int(width.total_seconds()),
        BUCKETS.c.bucket_start < end,
        BUCKETS.c.total > 0,
    )
    if start is not None:
        stmt = stmt.where(BUCKETS.c.bucket_start >= start)
    stmt = stmt.order_by(BUCKETS.c.bucket_start, BUCKETS.c.scope, BUCKETS.c.key)
    return [_bucket(row) for row in session.execute(stmt).mappings()]


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The detector and lifecycle state after judging every window that closed by `evaluated_until`."""

    evaluated_until: datetime
    detector: DetectorState
    lifecycle: LifecycleState


def _checkpoint(row: RowMapping) -> Checkpoint:
    return Checkpoint(
        evaluated_until=row["evaluated_until"],
        detector=DetectorState.from_dict(row["detector_state"]),
        lifecycle=LifecycleState.from_dict(row["lifecycle_state"]),
    )


def latest_checkpoint(session: Session, *, rule: str) -> Checkpoint | None:
    stmt = (
        select(CHECKPOINTS)
        .where(CHECKPOINTS.c.rule == rule)
        .order_by(CHECKPOINTS.c.evaluated_until.desc())
        .limit(1)
    )
    row = session.execute(stmt).mappings().first()
    return None if row is None else _checkpoint(row)


def checkpoint_at_or_before(session: Session, *, rule: str, at: datetime) -> Checkpoint | None:
    """The newest checkpoint from which windows including a bucket starting at `at` are judged again."""
    stmt = (
        select(CHECKPOINTS)
        .where(CHECKPOINTS.c.rule == rule, CHECKPOINTS.c.evaluated_until <= at)
        .order_by(CHECKPOINTS.c.evaluated_until.desc())
        .limit(1)
    )
    row = session.execute(stmt).mappings().first()
    return None if row is None else _checkpoint(row)


def save_checkpoint(session: Session, *, rule: str, checkpoint: Checkpoint, now: datetime) -> None:
    insert = _insert(session)(CHECKPOINTS)
    stmt = insert.on_conflict_do_update(
        index_elements=["rule", "evaluated_until"],
        set_={c: insert.excluded[c] for c in ("detector_state", "lifecycle_state", "created_at")},
    )
    session.execute(
        stmt,
        {
            "rule": rule,
            "evaluated_until": checkpoint.evaluated_until,
            "detector_state": checkpoint.detector.to_dict(),
            "lifecycle_state": checkpoint.lifecycle.to_dict(),
            "created_at": now,
        },
    )


def drop_checkpoints_after(session: Session, *, rule: str, after: datetime | None) -> int:
    """Forget checkpoints of a history a late story has just rewritten (all of them if None)."""
    stmt = delete(CHECKPOINTS).where(CHECKPOINTS.c.rule == rule)
    if after is not None:
        stmt = stmt.where(CHECKPOINTS.c.evaluated_until > after)
    return session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]


def thin_checkpoints(session: Session, *, rule: str, newest: datetime, spacing: timedelta) -> int:
    """Delete the checkpoints older than `newest` in its `spacing` slot (a grid from the epoch).

    A checkpoint is written at every step that judged something — every minute of a live
    stream — and holds every scope's state; keeping one per slot bounds the table to
    retention / spacing rows, and a late story is re-judged from at most two slots back.
    """
    slot_start = bucket_start(newest, spacing)
    stmt = delete(CHECKPOINTS).where(
        CHECKPOINTS.c.rule == rule,
        CHECKPOINTS.c.evaluated_until >= slot_start,
        CHECKPOINTS.c.evaluated_until < newest,
    )
    return session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]


def prune_checkpoints(session: Session, *, rule: str, keep_from: datetime) -> int:
    """Delete checkpoints older than `keep_from`, except the newest of them.

    Keeping that one means every bucket from `keep_from` on has a checkpoint at or before
    it, so a late story anywhere in the retention horizon can be re-judged; and if no
    checkpoint that old exists, none was ever pruned, so the empty initial state is one.
    """
    newest_old = select(func.max(CHECKPOINTS.c.evaluated_until)).where(
        CHECKPOINTS.c.rule == rule, CHECKPOINTS.c.evaluated_until <= keep_from
    )
    floor = session.scalar(newest_old)
    if floor is None:
        return 0
    stmt = delete(CHECKPOINTS).where(CHECKPOINTS.c.rule == rule, CHECKPOINTS.c.evaluated_until < floor)
    return session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- alerts and the outbox

_ALERT_STATE_COLUMNS: Final = (
    "rule",
    "scope",
    "key",
    "window_start",
    "opened_at",
    "last_detected_at",
    "severity",
    "notified_severity",
    "last_notified_at",
    "detections",
    "status",
    "resolved_at",
    "updated_at",
)


def _alert_values(alert: Alert, now: datetime) -> dict[str, Any]:
    return {
        "alert_key": alert.alert_key,
        "rule": alert.rule,
        "scope": alert.scope,
        "key": alert.key,
        "window_start": alert.window_start,
        "opened_at": alert.opened_at,
        "last_detected_at": alert.last_detected_at,
        "severity": alert.severity,
        "notified_severity": alert.notified_severity,
        "last_notified_at": alert.last_notified_at,
        "detections": alert.detections,
        "status": alert.status,
        "resolved_at": alert.resolved_at,
        "created_at": now,
        "updated_at": now,
    }


def upsert_alerts(
    session: Session, *, alerts: Sequence[tuple[Alert, Mapping[str, Any] | None]], now: datetime
) -> None:
    """Write each alert's current state by `alert_key`; with evidence (`Detection.to_dict()`
    of its latest detection) also replace its evidence, otherwise keep what is stored."""
    insert = _insert(session)(ALERTS)
    with_evidence = [
        {**_alert_values(a, now), "evidence": dict(ev), "event_ids": list(ev.get("event_ids", ()))}
        for a, ev in alerts
        if ev is not None
    ]
    without = [{**_alert_values(a, now), "evidence": {}, "event_ids": []} for a, ev in alerts if ev is None]
    if with_evidence:
        columns = (*_ALERT_STATE_COLUMNS, "evidence", "event_ids")
        stmt = insert.on_conflict_do_update(
            index_elements=["alert_key"], set_={c: insert.excluded[c] for c in columns}
        )
        session.execute(stmt, with_evidence)
    if without:
        stmt = insert.on_conflict_do_update(
            index_elements=["alert_key"], set_={c: insert.excluded[c] for c in _ALERT_STATE_COLUMNS}
        )
        session.execute(stmt, without)


def stored_evidence(session: Session, alert_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    keys = sorted(set(alert_keys))
    if not keys:
        return {}
    stmt = select(ALERTS.c.alert_key, ALERTS.c.evidence).where(ALERTS.c.alert_key.in_(keys))
    return {k: dict(ev or {}) for k, ev in session.execute(stmt).tuples()}


def supersede_alerts(
    session: Session, *, rule: str, opened_after: datetime | None, keep: Iterable[str], now: datetime
) -> list[str]:
    """Mark alerts opened after `opened_after` that a re-run did not raise again (`keep`).

    A late story can move when a spike was first detected, and with it the alert's key; the
    alert the old history opened would otherwise stay open for ever, since no lifecycle
    state tracks it any more. The row stays, marked; the engine withdraws whatever of it
    was notified (`notified_alerts`).
    """
    stmt = (
        update(ALERTS)
        .where(
            ALERTS.c.rule == rule, ALERTS.c.status != SUPERSEDED, ALERTS.c.alert_key.not_in(sorted(set(keep)))
        )
        .values(status=SUPERSEDED, updated_at=now)
        .returning(ALERTS.c.alert_key)
    )
    if opened_after is not None:
        stmt = stmt.where(ALERTS.c.opened_at > opened_after)
    return list(session.scalars(stmt))


def notified_alert_keys(session: Session, alert_keys: Iterable[str]) -> set[str]:
    """Those of `alert_keys` with a notification in the outbox (a withdrawal is none)."""
    keys = sorted(set(alert_keys))
    if not keys:
        return set()
    stmt = select(OUTBOX.c.alert_key).where(OUTBOX.c.alert_key.in_(keys), OUTBOX.c.kind != WITHDRAWN)
    return set(session.scalars(stmt))


def notified_alerts(session: Session, alert_keys: Iterable[str]) -> list[Withdrawal]:
    """The stored alerts among `alert_keys` that were notified: what a withdrawal must cite."""
    notified = notified_alert_keys(session, alert_keys)
    if not notified:
        return []
    stmt = select(ALERTS).where(ALERTS.c.alert_key.in_(sorted(notified))).order_by(ALERTS.c.alert_key)
    return [
        Withdrawal(
            alert_key=row["alert_key"],
            rule=row["rule"],
            scope=row["scope"],
            key=row["key"],
            severity=row["severity"],
            opened_at=row["opened_at"],
            resolved_at=row["resolved_at"],
            evidence=dict(row["evidence"] or {}),
        )
        for row in session.execute(stmt).mappings()
    ]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    dedupe_key: str
    alert_key: str
    kind: str
    severity: str
    scope: str
    key: str
    at: datetime
    payload: Mapping[str, Any]


def insert_outbox(session: Session, *, entries: Sequence[OutboxEntry], now: datetime) -> list[str]:
    """Insert notifications; one already there (same `dedupe_key`: a replay) is left as it
    is. Returns the dedupe keys actually inserted."""
    if not entries:
        return []
    insert = _insert(session)(OUTBOX)
    stmt = insert.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(OUTBOX.c.dedupe_key)
    rows = [
        {
            "dedupe_key": e.dedupe_key,
            "alert_key": e.alert_key,
            "kind": e.kind,
            "severity": e.severity,
            "scope": e.scope,
            "key": e.key,
            "at": e.at,
            "payload": dict(e.payload),
            "created_at": now,
            "published_at": None,
            "dispatched_at": None,
        }
        for e in entries
    ]
    return list(session.scalars(stmt, rows))


@dataclass(frozen=True, slots=True)
class PendingMessage:
    id: int
    dedupe_key: str
    payload: dict[str, Any]


def unpublished(session: Session, *, limit: int = 500) -> list[PendingMessage]:
    """Outbox rows not yet on the `alerts` topic, oldest first."""
    stmt = (
        select(OUTBOX.c.id, OUTBOX.c.dedupe_key, OUTBOX.c.payload)
        .where(OUTBOX.c.published_at.is_(None))
        .order_by(OUTBOX.c.id)
        .limit(limit)
    )
    return [PendingMessage(i, k, dict(p)) for i, k, p in session.execute(stmt).tuples()]


def mark_published(session: Session, *, ids: Sequence[int], now: datetime) -> int:
    if not ids:
        return 0
    stmt = update(OUTBOX).where(OUTBOX.c.id.in_(list(ids))).values(published_at=now)
    return session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]


def attach_evidence(
    session: Session,
    detections: Sequence[Detection],
    *,
    width: timedelta,
    max_ids: int,
    count: str = "stories",
) -> list[Detection]:
    """The detections with the event ids of their windows' bearish stories.

    The detector runs over stored bucket counts, which carry no ids; detections are rare, so
    the ids are read afterwards for just their windows, by the same rule (`aggregate`'s
    one-prediction-per-story, per-bucket sorted ids, buckets in time order) the detector
    applies when given `bearish_event_ids`.
    """
    if not detections:
        return []
    starts: set[datetime] = set()
    for d in detections:
        t = d.window_start
        while t < d.window_end:
            starts.add(t)
            t += width
    ids: dict[BucketKey, tuple[str, ...]] = {}
    for start, end in contiguous_ranges(starts, width):
        ids.update(bearish_event_ids(load_stories(session, start=start, end=end, count=count), width))
    out: list[Detection] = []
    for d in detections:
        evidence: list[str] = []
        t = d.window_start
        while t < d.window_end:
            evidence.extend(ids.get((d.scope, d.key, t), ()))
            t += width
        out.append(replace(d, event_ids=tuple(evidence[:max_ids])))
    if count != "stories":
        return out
    sizes = story_summaries(session, [e for d in out for e in d.event_ids])
    return [replace(d, copies=tuple(sizes[e].copies if e in sizes else 0 for e in d.event_ids)) for d in out]


def alerter_lock_name(rule: str) -> str:
    """The name of the alerter's leader lock (services.storage.leadership): one active
    alerter per database and rule; the key is the one earlier versions took, so an old
    alerter and a new one still exclude each other."""
    return f"finsent-alerter|{rule}"
