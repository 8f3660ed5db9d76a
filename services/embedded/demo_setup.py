"""What `finsent run --demo` sets up beside the feed, idempotently: a log subscription that
receives the demo's alert, and a dashboard login to look at the same data.

Both are for the demo only. The subscription `finsent-demo` logs every alert (warning and
up, all scopes) to the logger `finsent.demo` in the dispatcher's log; remove it with
`finsent subscriptions remove finsent-demo`. The dashboard user `demo` (role analyst) gets a
random password, kept beside the database in FINSENT_HOME/demo-login.txt (owner-only) so a
re-run prints the same one; remove it with `finsent dashboard users remove demo`.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Final

from sqlalchemy.orm import Session

from dashboards.access import Role

DEMO_SUBSCRIPTION = "finsent-demo"
DEMO_LOGGER = "finsent.demo"
DEMO_USER = "demo"
DEMO_ROLE: Final[Role] = "analyst"
DEMO_LOGIN_FILE = "demo-login.txt"


def ensure_demo_subscription(session: Session, *, now: datetime) -> tuple[int, bool]:
    """(id, enabled) of the demo subscription, added if missing; an existing one (perhaps
    edited or paused by its user) is left as it is."""
    from services.delivery import build_subscription
    from services.delivery.repository import add_subscription, get_subscription

    found = get_subscription(session, name=DEMO_SUBSCRIPTION)
    if found is None:
        found = add_subscription(
            session,
            subscription=build_subscription(name=DEMO_SUBSCRIPTION, channel="log", target=DEMO_LOGGER),
            now=now,
        )
    assert found.id is not None  # stored
    return found.id, found.enabled


def ensure_demo_user(session: Session, home: Path) -> str:
    """The demo user's password: the one kept in `home` if it still logs in, else a new one
    (stored in `dashboard_users` as a bcrypt hash, and in `home` for the next run)."""
    from dashboards.users_file import UserEntry, authenticate, hash_password
    from services.storage import StoredDashboardUser, get_dashboard_user, upsert_dashboard_user

    kept = home / DEMO_LOGIN_FILE
    try:
        password = kept.read_text(encoding="utf-8").strip()
    except OSError:
        password = ""
    stored = get_dashboard_user(session, DEMO_USER)
    if password and stored is not None:
        entry = UserEntry(stored.name, DEMO_ROLE, stored.password_hash, stored.email)
        if authenticate({DEMO_USER: entry}, DEMO_USER, password) is not None:
            return password
    password = secrets.token_urlsafe(12)
    upsert_dashboard_user(session, StoredDashboardUser(DEMO_USER, DEMO_ROLE, hash_password(password), None))
    fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    return password
