"""Reads and writes of `dashboard_users` over a Session; no hashing and no validation here.

`finsent dashboard users` validates names and roles and hashes passwords (dashboards.users_file)
before it calls these; the dashboard reads through dashboards.data.users.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from services.storage.dashboard_models import DashboardUserRow


@dataclass(frozen=True, slots=True)
class StoredDashboardUser:
    """A row of `dashboard_users`, detached from the session."""

    name: str
    role: str
    password_hash: str | None
    email: str | None


def _stored(row: DashboardUserRow) -> StoredDashboardUser:
    return StoredDashboardUser(row.name, row.role, row.password_hash, row.email)


def list_dashboard_users(session: Session) -> list[StoredDashboardUser]:
    """Every user, by name."""
    rows = session.scalars(select(DashboardUserRow).order_by(DashboardUserRow.name))
    return [_stored(row) for row in rows]


def get_dashboard_user(session: Session, name: str) -> StoredDashboardUser | None:
    row = session.get(DashboardUserRow, name)
    return _stored(row) if row is not None else None


def upsert_dashboard_user(
    session: Session, user: StoredDashboardUser, *, now: datetime | None = None
) -> bool:
    """Add `user`, or replace the role, hash and e-mail of the user of that name; True if new."""
    now = now or datetime.now(UTC)
    row = session.get(DashboardUserRow, user.name)
    if row is None:
        session.add(
            DashboardUserRow(
                name=user.name,
                role=user.role,
                password_hash=user.password_hash,
                email=user.email,
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        return True
    row.role, row.password_hash, row.email, row.updated_at = user.role, user.password_hash, user.email, now
    session.flush()
    return False


def users_to_add(users: Iterable[StoredDashboardUser], existing: Iterable[str]) -> list[StoredDashboardUser]:
    """The users whose name is neither in `existing` nor earlier in `users`, in order: an
    import adds only newcomers, so it never reverts a change made in the table since."""
    seen = set(existing)
    fresh = []
    for user in users:
        if user.name not in seen:
            seen.add(user.name)
            fresh.append(user)
    return fresh


def add_missing_dashboard_users(
    session: Session, users: list[StoredDashboardUser], *, now: datetime | None = None
) -> list[str]:
    """Insert the users whose name is not in the table yet; leave the others as they are.
    Returns the names added (importing the same users again adds none)."""
    fresh = users_to_add(users, session.scalars(select(DashboardUserRow.name)))
    for user in fresh:
        upsert_dashboard_user(session, user, now=now)
    return [user.name for user in fresh]


def remove_dashboard_user(session: Session, name: str) -> bool:
    result = session.execute(delete(DashboardUserRow).where(DashboardUserRow.name == name))
    return bool(result.rowcount)  # type: ignore[attr-defined]
