"""Dashboard users from the database, for the login (dashboards.auth).

Read on every script run, uncached: removing a user or changing a role or password applies
to that user's open sessions at their next click, on every replica. Both reads are one
small query (the table holds a team's logins, not customers).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dashboards.access import Role
from dashboards.users_file import UserEntry
from services.storage import StoredDashboardUser, get_dashboard_user, list_dashboard_users


def _entry(user: StoredDashboardUser) -> UserEntry:
    return UserEntry(user.name, cast(Role, user.role), user.password_hash, user.email)


def user_named(session: Session, *, name: str) -> UserEntry | None:
    """The user who logs in as `name`, or None."""
    user = get_dashboard_user(session, name)
    return _entry(user) if user is not None else None


def all_users(session: Session) -> dict[str, UserEntry]:
    """Every user by name (for OIDC matching by e-mail and the "no users yet" hint)."""
    return {user.name: _entry(user) for user in list_dashboard_users(session)}


class UsersUnavailable(RuntimeError):
    """The users could not be read (database unreachable, not migrated): one line, for the log."""


def lookup_user(sessions: sessionmaker[Session], name: str) -> UserEntry | None:
    """`user_named` in its own session; a database error becomes `UsersUnavailable`."""
    try:
        with sessions() as session:
            return user_named(session, name=name)
    except SQLAlchemyError as exc:
        raise UsersUnavailable(" ".join(str(exc).split())[:500]) from exc


def lookup_users(sessions: sessionmaker[Session]) -> dict[str, UserEntry]:
    """`all_users` in its own session; a database error becomes `UsersUnavailable`."""
    try:
        with sessions() as session:
            return all_users(session)
    except SQLAlchemyError as exc:
        raise UsersUnavailable(" ".join(str(exc).split())[:500]) from exc
