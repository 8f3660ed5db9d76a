"""The analyst's reads and writes on alerts, shared by the dashboard and `finsent alerts`.

The alerter owns `status` (open/resolved/superseded, recomputed from event time on every
replay); analysts own `acknowledged_*`, `closed_*` and `muted_*`. Keeping them apart means a
replay never undoes an analyst's close, and an analyst never corrupts the detector's
lifecycle. `muted_until` is honoured by the dispatcher's fan-out
(services.delivery.repository). SQLAlchemy 2.0 Core with bound parameters only; every
function works in the caller's session and the caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from services.alerting.lifecycle import mute_until
from services.storage import AlertRow

ALERTS = cast(Table, AlertRow.__table__)

# What `find_alerts(status=...)` selects: the alerter's status, or the analyst's view of it.
ALERT_FILTERS: Final = ("open", "attention", "acknowledged", "closed", "resolved", "superseded", "all")


def acknowledge_alert(session: Session, *, alert_id: int, by: str, now: datetime) -> bool:
    """Mark seen; the first acknowledgement stands (who saw it first is what matters).
    False when there is no such alert or it was already acknowledged."""
    result = session.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id, ALERTS.c.acknowledged_at.is_(None))
        .values(acknowledged_by=by, acknowledged_at=now)
        .returning(ALERTS.c.id)
    )
    return result.first() is not None


def close_alert(session: Session, *, alert_id: int, by: str, now: datetime) -> bool:
    """Analyst resolution; also acknowledges it if nobody had. False: no such alert."""
    found = session.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id)
        .values(closed_by=by, closed_at=now)
        .returning(ALERTS.c.id)
    ).first()
    if found is not None:
        acknowledge_alert(session, alert_id=alert_id, by=by, now=now)
    return found is not None


def reopen_alert(session: Session, *, alert_id: int) -> bool:
    result = session.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id)
        .values(closed_by=None, closed_at=None)
        .returning(ALERTS.c.id)
    )
    return result.first() is not None


def mute_alert(session: Session, *, alert_id: int, by: str, now: datetime, hours: float) -> datetime:
    """No deliveries of this alert until now + `hours` (lifecycle.mute_until); returns the end."""
    until = mute_until(now, hours)
    found = session.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id)
        .values(muted_until=until, muted_by=by)
        .returning(ALERTS.c.id)
    ).first()
    if found is None:
        raise LookupError(f"no alert #{alert_id}")
    return until


def unmute_alert(session: Session, *, alert_id: int) -> bool:
    result = session.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id)
        .values(muted_until=None, muted_by=None)
        .returning(ALERTS.c.id)
    )
    return result.first() is not None


def find_alerts(
    session: Session,
    *,
    status: str = "all",
    scope: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[AlertRow]:
    """Alerts newest first. `status` is one of ALERT_FILTERS: "attention" is open and not
    closed by an analyst, "acknowledged" acknowledged but not closed, "closed" closed by an
    analyst; the rest are the alerter's status. `since` keeps alerts opened at or after it."""
    if status not in ALERT_FILTERS:
        raise ValueError(f"status must be one of {', '.join(ALERT_FILTERS)}, not {status!r}")
    stmt = select(AlertRow)
    if status == "attention":
        stmt = stmt.where(AlertRow.status == "open", AlertRow.closed_at.is_(None))
    elif status == "acknowledged":
        stmt = stmt.where(AlertRow.acknowledged_at.is_not(None), AlertRow.closed_at.is_(None))
    elif status == "closed":
        stmt = stmt.where(AlertRow.closed_at.is_not(None))
    elif status != "all":
        stmt = stmt.where(AlertRow.status == status)
    if scope is not None:
        stmt = stmt.where(AlertRow.scope == scope)
    if since is not None:
        stmt = stmt.where(AlertRow.opened_at >= since)
    stmt = stmt.order_by(AlertRow.opened_at.desc(), AlertRow.id.desc()).limit(limit)
    return list(session.scalars(stmt))
