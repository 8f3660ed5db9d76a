"""Alerts as analysts see them: the feed, one index's alerts for its chart, the evidence
table. The analyst's writes (acknowledge, close, mute) are services.alerting.analyst's,
shared with `finsent alerts`; dashboards.actions calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import pandas as pd
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dashboards.data.indices import TimeRange
from services.storage.alert_models import AlertRow

A = AlertRow
AlertShow = Literal["open", "needs attention", "all"]
SHOWN_STATUS: Final[dict[str, str]] = {"superseded": "withdrawn (superseded by late stories)"}


@dataclass(frozen=True, slots=True)
class AlertView:
    id: int
    rule: str
    scope: str
    key: str
    severity: str
    status: str
    window_start: datetime
    opened_at: datetime
    last_detected_at: datetime
    resolved_at: datetime | None
    detections: int
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    closed_by: str | None
    closed_at: datetime | None
    muted_until: datetime | None
    muted_by: str | None
    evidence: dict[str, Any] = field(default_factory=dict)
    event_ids: tuple[str, ...] = ()

    @property
    def shown_status(self) -> str:
        """The status as the feed shows it. A superseded alert is shown as withdrawn: that is
        what its subscribers were told (if it was notified at all), and "superseded" alone
        does not say that the alarm no longer stands."""
        return SHOWN_STATUS.get(self.status, self.status)

    def muted(self, now: datetime) -> bool:
        return self.muted_until is not None and self.muted_until > now

    @property
    def label(self) -> str:
        return (
            f"#{self.id} {self.severity} {self.scope} {self.key} opened {self.opened_at:%Y-%m-%d %H:%M} UTC"
        )


def _view(row: AlertRow) -> AlertView:
    return AlertView(
        id=row.id,
        rule=row.rule,
        scope=row.scope,
        key=row.key,
        severity=row.severity,
        status=row.status,
        window_start=row.window_start,
        opened_at=row.opened_at,
        last_detected_at=row.last_detected_at,
        resolved_at=row.resolved_at,
        detections=row.detections,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
        closed_by=row.closed_by,
        closed_at=row.closed_at,
        muted_until=row.muted_until,
        muted_by=row.muted_by,
        evidence=dict(row.evidence or {}),
        event_ids=tuple(row.event_ids or ()),
    )


def alert_feed(
    session: Session, *, show: AlertShow = "needs attention", scope: str | None = None, limit: int = 100
) -> list[AlertView]:
    """Newest first. "needs attention": open and not closed by an analyst."""
    stmt = select(A)
    if show == "open":
        stmt = stmt.where(A.status == "open")
    elif show == "needs attention":
        stmt = stmt.where(A.status == "open", A.closed_at.is_(None))
    if scope:
        stmt = stmt.where(A.scope == scope)
    stmt = stmt.order_by(A.opened_at.desc(), A.id.desc()).limit(limit)
    return [_view(r) for r in session.scalars(stmt)]


def alerts_overlapping(session: Session, *, scope: str, key: str, period: TimeRange) -> pd.DataFrame:
    """Alerts of one index whose span touches `period`, for marking them on its chart."""
    stmt = (
        select(A.id, A.severity, A.status, A.window_start, A.opened_at, A.last_detected_at, A.closed_at)
        .where(
            A.scope == scope,
            A.key == key,
            A.window_start < period.end,
            or_(A.resolved_at.is_(None), A.resolved_at >= period.start),
        )
        .order_by(A.opened_at)
        .limit(500)
    )
    rows = session.execute(stmt).all()
    return pd.DataFrame(
        [tuple(r) for r in rows],
        columns=["id", "severity", "status", "window_start", "opened_at", "last_detected_at", "closed_at"],
    )


def evidence_table(evidence: dict[str, Any]) -> pd.DataFrame:
    """The detection's numbers as (field, value) rows; absent fields are left out."""
    tests = evidence.get("tests")
    fields = [
        ("tests fired", ", ".join(str(t) for t in tests) if isinstance(tests, list) and tests else None),
        ("window", _window(evidence)),
        ("stories in window", evidence.get("total")),
        ("bearish in window", evidence.get("bearish")),
        ("bearish share", _pct(evidence.get("share"))),
        ("baseline bearish share", _pct(evidence.get("baseline_share"))),
        ("expected bearish", _num(evidence.get("expected_bearish"))),
        ("baseline stories", _num(evidence.get("baseline_items"))),
        ("z score", _num(evidence.get("z_score"))),
        ("usual bearish (surge test)", _num(evidence.get("usual_bearish"))),
        ("rate ratio", _num(evidence.get("rate_ratio"))),
        ("p value", _sci(evidence.get("p_value"))),
        ("p value, share test", _sci(evidence.get("p_share"))),
        ("p value, surge test", _sci(evidence.get("p_surge"))),
        ("rule", evidence.get("rule")),
    ]
    return pd.DataFrame([(k, str(v)) for k, v in fields if v is not None], columns=["evidence", "value"])


def _window(evidence: dict[str, Any]) -> str | None:
    start, end = evidence.get("window_start"), evidence.get("window_end")
    return f"{start} .. {end}" if start and end else None


def _pct(value: Any) -> str | None:
    return f"{float(value):.1%}" if isinstance(value, int | float) else None


def _num(value: Any) -> str | None:
    return f"{float(value):.2f}" if isinstance(value, int | float) else None


def _sci(value: Any) -> str | None:
    return f"{float(value):.2e}" if isinstance(value, int | float) else None
