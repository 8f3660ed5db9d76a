"""Keyword-only data access of delivery: subscriptions, fan-out, claiming, recording.

The state machine of a `deliveries` row, and why each step is its own short transaction:

1. **fan-out** (`fan_out`): for outbox rows not yet dispatched, one transaction inserts a
   delivery per matching subscription (`ON CONFLICT DO NOTHING`: a second fan-out of the
   same row adds nothing) and sets `dispatched_at`. Either both happen or neither. A row
   whose alert an analyst muted (`alerts.muted_until` after now) gets no deliveries.
2. **digest** (`form_digests`): a digest subscription's deliveries whose period has closed
   are stamped with one `digest_key` (a hash of the members) before anything is sent, so a
   retry or a re-send after a crash is the same digest under the same key.
3. **claim** (`claim_due`): due deliveries get `attempts + 1` and `next_attempt_at` pushed
   to a lease deadline, committed *before* sending. A dispatcher that dies while sending
   leaves them pending; when the lease runs out they are sent again with the same
   idempotency key, which receivers use to drop the duplicate. At-least-once, never lost.
   Counting the attempt at claim time also bounds re-sends of a delivery that crashes the
   dispatcher every time (`give_up_interrupted`): `attempts` can exceed the recorded
   attempt rows by such crashes.
4. **record** (`record_attempt`): the attempt row and the new state, in one transaction.

Two dispatchers: on PostgreSQL the claims use `FOR UPDATE SKIP LOCKED` (immediate) and a
guarded `UPDATE … RETURNING` (digests), so a delivery is claimed by one of them; the lease
keeps the other away while it is sent. On SQLite the database's single writer serialises
claims too, but one dispatcher is the supported setup there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from services.delivery.backoff import Transition
from services.delivery.channels.base import SendResult
from services.delivery.model import Message, Notification, Subscription
from services.delivery.render import digest_key
from services.delivery.subscriptions import plan_fan_out
from services.storage import AlertOutboxRow, AlertRow, DeliveryAttemptRow, DeliveryRow, SubscriptionRow
from services.storage.repository import dialect_insert

OUTBOX = cast(Table, AlertOutboxRow.__table__)
ALERTS = cast(Table, AlertRow.__table__)
SUBSCRIPTIONS = cast(Table, SubscriptionRow.__table__)
DELIVERIES = cast(Table, DeliveryRow.__table__)
ATTEMPTS = cast(Table, DeliveryAttemptRow.__table__)


class SubscriptionExists(ValueError):
    pass


# ------------------------------------------------------------------ subscriptions


def _subscription(row: Any) -> Subscription:
    m = row._mapping  # by name: `keys` and `count` are also attributes of a Row
    return Subscription(
        id=m["id"],
        name=m["name"],
        channel=m["channel"],
        target=m["target"],
        scopes=tuple(m["scopes"]),
        keys=tuple(m["keys"]),
        min_severity=m["min_severity"],
        secret_ref=m["secret_ref"],
        digest_minutes=m["digest_minutes"],
        enabled=m["enabled"],
    )


def add_subscription(session: Session, *, subscription: Subscription, now: datetime) -> Subscription:
    """Store a validated subscription (`build_subscription`); `SubscriptionExists` if the name is taken."""
    insert = dialect_insert(session)
    stmt = (
        insert(SUBSCRIPTIONS)
        .values(
            name=subscription.name,
            scopes=list(subscription.scopes),
            keys=list(subscription.keys),
            min_severity=subscription.min_severity,
            channel=subscription.channel,
            target=subscription.target,
            secret_ref=subscription.secret_ref,
            digest_minutes=subscription.digest_minutes,
            enabled=subscription.enabled,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(SUBSCRIPTIONS.c.id)
    )
    new_id = session.scalar(stmt)
    if new_id is None:
        raise SubscriptionExists(f"a subscription named {subscription.name!r} already exists")
    return replace(subscription, id=new_id)


def list_subscriptions(session: Session, *, enabled_only: bool = False) -> list[Subscription]:
    stmt = select(SUBSCRIPTIONS).order_by(SUBSCRIPTIONS.c.name)
    if enabled_only:
        stmt = stmt.where(SUBSCRIPTIONS.c.enabled.is_(True))
    return [_subscription(row) for row in session.execute(stmt)]


def get_subscription(session: Session, *, name: str) -> Subscription | None:
    row = session.execute(select(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.name == name)).first()
    return _subscription(row) if row is not None else None


def remove_subscription(session: Session, *, name: str) -> bool:
    """Delete it and, by cascade, its deliveries and their attempts. True if it existed."""
    deleted = session.execute(
        delete(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.name == name).returning(SUBSCRIPTIONS.c.id)
    )
    return deleted.first() is not None


def count_deliveries(session: Session, *, name: str) -> int:
    """Deliveries (pending, delivered or dead) of the subscription called `name`: what
    removing it would delete."""
    stmt = (
        select(func.count())
        .select_from(DELIVERIES.join(SUBSCRIPTIONS, DELIVERIES.c.subscription_id == SUBSCRIPTIONS.c.id))
        .where(SUBSCRIPTIONS.c.name == name)
    )
    return int(session.scalar(stmt) or 0)


def update_subscription(session: Session, *, name: str, subscription: Subscription) -> Subscription | None:
    """Replace the filters and channel of the subscription called `name` with a validated
    `subscription` (its `enabled` flag included); None if there is none. Renaming is refused
    with `SubscriptionExists` when the new name is taken. Deliveries already fanned out keep
    going to it: they were promised under the old settings."""
    current = get_subscription(session, name=name)
    if current is None:
        return None
    if subscription.name != name and get_subscription(session, name=subscription.name) is not None:
        raise SubscriptionExists(f"a subscription named {subscription.name!r} already exists")
    session.execute(
        update(SUBSCRIPTIONS)
        .where(SUBSCRIPTIONS.c.id == current.id)
        .values(
            name=subscription.name,
            scopes=list(subscription.scopes),
            keys=list(subscription.keys),
            min_severity=subscription.min_severity,
            channel=subscription.channel,
            target=subscription.target,
            secret_ref=subscription.secret_ref,
            digest_minutes=subscription.digest_minutes,
            enabled=subscription.enabled,
        )
    )
    return replace(subscription, id=current.id)


def set_subscription_enabled(session: Session, *, name: str, enabled: bool) -> bool:
    """Pause (False) or resume (True); a paused subscription gets no new deliveries and its
    pending ones wait. True if it exists."""
    updated = session.execute(
        update(SUBSCRIPTIONS)
        .where(SUBSCRIPTIONS.c.name == name)
        .values(enabled=enabled)
        .returning(SUBSCRIPTIONS.c.id)
    )
    return updated.first() is not None


def muted_alert_keys(session: Session, *, alert_keys: Iterable[str], now: datetime) -> set[str]:
    """Those of `alert_keys` an analyst has muted until after `now` (the dashboard's mute)."""
    keys = sorted(set(alert_keys))
    if not keys:
        return set()
    return set(
        session.scalars(
            select(ALERTS.c.alert_key).where(ALERTS.c.alert_key.in_(keys), ALERTS.c.muted_until > now)
        )
    )


# ------------------------------------------------------------------ fan-out


def _notification(row: Any) -> Notification:
    return Notification(
        outbox_id=row.id,
        dedupe_key=row.dedupe_key,
        alert_key=row.alert_key,
        kind=row.kind,
        severity=row.severity,
        scope=row.scope,
        key=row.key,
        at=row.at,
        payload=row.payload,
    )


@dataclass(frozen=True, slots=True)
class FanOut:
    outbox_rows: int  # rows marked dispatched
    deliveries: int  # deliveries newly created


def fan_out(session: Session, *, now: datetime, limit: int) -> FanOut:
    """Turn up to `limit` undispatched outbox rows into deliveries (oldest first)."""
    rows = session.execute(
        select(OUTBOX)
        .where(OUTBOX.c.dispatched_at.is_(None))
        .order_by(OUTBOX.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return FanOut(0, 0)
    # A muted alert's notifications are marked dispatched without deliveries: muting means
    # "not now", and a notification delivered after the mute ends would be stale news.
    muted = muted_alert_keys(session, alert_keys=(r.alert_key for r in rows), now=now)
    planned = plan_fan_out(
        [_notification(r) for r in rows if r.alert_key not in muted],
        list_subscriptions(session, enabled_only=True),
        now,
    )
    created = 0
    if planned:
        insert = dialect_insert(session)
        values = [
            {
                "outbox_id": p.outbox_id,
                "subscription_id": p.subscription_id,
                "idempotency_key": p.idempotency_key,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": p.next_attempt_at,
                "digest_key": None,
                "last_error": None,
                "delivered_at": None,
                "created_at": now,
            }
            for p in planned
        ]
        stmt = insert(DELIVERIES).on_conflict_do_nothing().returning(DELIVERIES.c.id)
        created = len(session.scalars(stmt, values).all())
    session.execute(update(OUTBOX).where(OUTBOX.c.id.in_([r.id for r in rows])).values(dispatched_at=now))
    return FanOut(len(rows), created)


def form_digests(session: Session, *, now: datetime) -> int:
    """Stamp due, unstamped deliveries of digest subscriptions with their digest key; the
    number of digests formed."""
    d, s = DELIVERIES.c, SUBSCRIPTIONS.c
    rows = session.execute(
        select(d.id, d.subscription_id, d.idempotency_key)
        .join(SUBSCRIPTIONS, s.id == d.subscription_id)
        .where(
            d.status == "pending",
            d.digest_key.is_(None),
            d.next_attempt_at <= now,
            s.digest_minutes.is_not(None),
            s.enabled.is_(True),
        )
        .with_for_update(skip_locked=True, of=DELIVERIES)
    ).all()
    groups: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        groups[row.subscription_id].append(row)
    for subscription_id, members in groups.items():
        key = digest_key(subscription_id, [m.idempotency_key for m in members])
        session.execute(
            update(DELIVERIES)
            .where(d.id.in_([m.id for m in members]), d.digest_key.is_(None))
            .values(digest_key=key, next_attempt_at=now)
        )
    return len(groups)


# ------------------------------------------------------------------ claim and record


@dataclass(frozen=True, slots=True)
class Claim:
    """One send: a single delivery, or all deliveries of a digest; `attempt` is 1-based."""

    delivery_ids: tuple[int, ...]
    attempt: int
    subscription: Subscription
    message: Message


def claim_due(session: Session, *, now: datetime, lease_until: datetime, limit: int) -> list[Claim]:
    """Claim up to `limit` sends that are due (immediate deliveries first, then digests)."""
    d, s = DELIVERIES.c, SUBSCRIPTIONS.c
    due = (
        d.status == "pending",
        d.next_attempt_at <= now,
    )
    single = (
        select(d.id)
        .join(SUBSCRIPTIONS, s.id == d.subscription_id)
        .where(*due, d.digest_key.is_(None), s.digest_minutes.is_(None), s.enabled.is_(True))
        .order_by(d.next_attempt_at, d.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=DELIVERIES)
        # A CTE, not `id IN (subquery)`: PostgreSQL may re-run such a subquery while
        # updating and then claims more than `limit` rows (seen here: 40 of limit 8).
        .cte("due_single")
    )
    claimed: list[tuple[tuple[int, ...], int]] = [
        ((row.id,), row.attempts)
        for row in session.execute(
            update(DELIVERIES)
            .where(d.id == single.c.id, *due)
            .values(attempts=d.attempts + 1, next_attempt_at=lease_until)
            .returning(d.id, d.attempts)
        )
    ]
    if len(claimed) < limit:
        digest_keys = session.scalars(
            select(d.digest_key)
            .join(SUBSCRIPTIONS, s.id == d.subscription_id)
            .where(*due, d.digest_key.is_not(None), s.enabled.is_(True))
            .group_by(d.digest_key)
            .order_by(func.min(d.next_attempt_at), d.digest_key)
            .limit(limit - len(claimed))
        ).all()
        for key in digest_keys:
            # Guarded by `due`: a concurrent claimer that got there first moved next_attempt_at.
            members = session.execute(
                update(DELIVERIES)
                .where(d.digest_key == key, *due)
                .values(attempts=d.attempts + 1, next_attempt_at=lease_until)
                .returning(d.id, d.attempts)
            ).all()
            if members:
                claimed.append((tuple(sorted(m.id for m in members)), max(m.attempts for m in members)))
    return _load_claims(session, claimed)


def _load_claims(session: Session, claimed: Sequence[tuple[tuple[int, ...], int]]) -> list[Claim]:
    ids = [i for group, _ in claimed for i in group]
    if not ids:
        return []
    d = DELIVERIES.c
    rows = session.execute(
        select(
            d.id.label("delivery_id"),
            d.idempotency_key,
            d.digest_key,
            d.subscription_id,
            *[c.label(f"o_{c.name}") for c in OUTBOX.c],
        )
        .join(OUTBOX, OUTBOX.c.id == d.outbox_id)
        .where(d.id.in_(ids))
    ).all()
    by_id = {row.delivery_id: row for row in rows}
    subs = {
        row.id: _subscription(row)
        for row in session.execute(
            select(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id.in_({row.subscription_id for row in rows}))
        )
    }
    claims = []
    for group, attempt in claimed:
        members = [by_id[i] for i in group if i in by_id]
        if not members:
            continue
        notifications = tuple(
            sorted((_outbox_notification(m) for m in members), key=lambda n: (n.at, n.outbox_id))
        )
        first = members[0]
        subscription = subs[first.subscription_id]
        digest = first.digest_key is not None
        message = Message(
            idempotency_key=first.digest_key if digest else first.idempotency_key,
            subscription=subscription.name,
            notifications=notifications,
            digest=digest,
        )
        claims.append(Claim(tuple(m.delivery_id for m in members), attempt, subscription, message))
    return claims


def _outbox_notification(row: Any) -> Notification:
    return Notification(
        outbox_id=row.o_id,
        dedupe_key=row.o_dedupe_key,
        alert_key=row.o_alert_key,
        kind=row.o_kind,
        severity=row.o_severity,
        scope=row.o_scope,
        key=row.o_key,
        at=row.o_at,
        payload=row.o_payload,
    )


def give_up_interrupted(session: Session, *, now: datetime, max_attempts: int) -> int:
    """Mark dead the due deliveries that already used every attempt: only possible when the
    last one was claimed and never recorded (the dispatcher died while sending), so its
    outcome is unknown. Without this a send that crashes the dispatcher would loop forever."""
    d = DELIVERIES.c
    result = session.execute(
        update(DELIVERIES)
        .where(d.status == "pending", d.attempts >= max_attempts, d.next_attempt_at <= now)
        .values(status="dead", last_error="gave up: the last attempt was interrupted (outcome unknown)")
        .returning(d.id)
    )
    return len(result.all())


def record_attempt(
    session: Session,
    *,
    claim: Claim,
    started_at: datetime,
    finished_at: datetime,
    result: SendResult,
    transition: Transition,
) -> None:
    """The attempt row(s) and the deliveries' new state (only if still pending: a row that
    another dispatcher already finished is not reopened)."""
    session.execute(
        ATTEMPTS.insert(),
        [
            {
                "delivery_id": delivery_id,
                "attempt": claim.attempt,
                "started_at": started_at,
                "finished_at": finished_at,
                "ok": result.ok,
                "status_code": result.status_code,
                "error": result.error,
            }
            for delivery_id in claim.delivery_ids
        ],
    )
    d = DELIVERIES.c
    values: dict[str, Any] = {"status": transition.status, "last_error": result.error}
    if transition.next_attempt_at is not None:
        values["next_attempt_at"] = transition.next_attempt_at
    if transition.status == "delivered":
        values["delivered_at"] = finished_at
    session.execute(
        update(DELIVERIES).where(d.id.in_(claim.delivery_ids), d.status == "pending").values(**values)
    )


def pending_count(session: Session) -> int:
    stmt = select(func.count()).select_from(DELIVERIES).where(DELIVERIES.c.status == "pending")
    return session.scalar(stmt) or 0
