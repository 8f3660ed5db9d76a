"""What `finsent run --demo` reads back from the database: the demo's alerts, whether they
reached the demo subscription, and how far the alerter has judged.

The database, not the `alerts` topic, is the record: on a re-run the embedded broker starts
empty and the alert raised by the first run is published nowhere again, but its row, its
outbox message and its delivery are still there.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.storage import AlerterCheckpointRow, AlertOutboxRow, AlertRow, DeliveryRow, NewsItemRow


@dataclass(frozen=True, slots=True)
class DemoAlert:
    alert_key: str
    created_at: datetime  # wall clock: when the alerter wrote it
    message: dict[str, Any]  # its first notification (the `alerts` message), for printing
    delivered_at: datetime | None  # to the demo subscription; None: not yet


def demo_alerts(
    session: Session,
    *,
    burst_ids: Collection[str],
    since: datetime,
    subscription_id: int,
) -> list[DemoAlert]:
    """Alerts whose evidence cites a burst headline (windows starting at `since` or later),
    oldest first, with their delivery to the demo subscription."""
    wanted = set(burst_ids)
    rows = session.execute(
        select(AlertRow.alert_key, AlertRow.event_ids, AlertRow.created_at)
        .where(AlertRow.window_start >= since)
        .order_by(AlertRow.id)
    ).all()
    found: list[DemoAlert] = []
    for alert_key, event_ids, created_at in rows:
        if not wanted.intersection(event_ids or ()):
            continue
        first = session.execute(
            select(AlertOutboxRow.id, AlertOutboxRow.payload)
            .where(AlertOutboxRow.alert_key == alert_key)
            .order_by(AlertOutboxRow.id)
            .limit(1)
        ).first()
        if first is None:
            continue
        delivered_at = session.scalar(
            select(func.min(DeliveryRow.delivered_at))
            .join(AlertOutboxRow, AlertOutboxRow.id == DeliveryRow.outbox_id)
            .where(
                AlertOutboxRow.alert_key == alert_key,
                DeliveryRow.subscription_id == subscription_id,
                DeliveryRow.status == "delivered",
            )
        )
        found.append(DemoAlert(alert_key, created_at, dict(first.payload), delivered_at))
    return found


def judged_until(session: Session) -> datetime | None:
    """The event time up to which the alerter has judged every window (its newest checkpoint)."""
    return session.scalar(select(func.max(AlerterCheckpointRow.evaluated_until)))


def stored_published_at(session: Session, event_id: str) -> datetime | None:
    """When a story already stored was published (None: not stored)."""
    return session.scalar(select(NewsItemRow.published_at).where(NewsItemRow.event_id == event_id))
