"""What `finsent run --demo` sets up, on both databases: the demo subscription once (and left as
its user leaves it), and a dashboard login whose password survives re-runs."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dashboards.data.users import all_users
from dashboards.users_file import authenticate, hash_password
from services.delivery.repository import get_subscription, list_subscriptions, set_subscription_enabled
from services.embedded.demo_setup import (
    DEMO_LOGIN_FILE,
    DEMO_SUBSCRIPTION,
    ensure_demo_subscription,
    ensure_demo_user,
)
from services.storage import StoredDashboardUser, upsert_dashboard_user

pytestmark = pytest.mark.integration
NOW = datetime(2025, 3, 4, 15, 30, tzinfo=UTC)


def test_the_demo_subscription_is_added_once_and_a_paused_one_stays_paused(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        first = ensure_demo_subscription(session, now=NOW)
    with Session(engine) as session, session.begin():
        assert ensure_demo_subscription(session, now=NOW) == first
        assert first[1] is True
        sub = get_subscription(session, name=DEMO_SUBSCRIPTION)
        assert sub is not None and (sub.channel, sub.scopes, sub.keys, sub.min_severity) == (
            "log",
            (),
            (),
            "warning",
        )
        assert [s.name for s in list_subscriptions(session)] == [DEMO_SUBSCRIPTION]
        set_subscription_enabled(session, name=DEMO_SUBSCRIPTION, enabled=False)
    with Session(engine) as session, session.begin():
        assert ensure_demo_subscription(session, now=NOW) == (first[0], False)


def test_the_demo_login_keeps_its_password_until_it_no_longer_logs_in(engine: Engine, tmp_path: Path) -> None:
    def ensure() -> str:
        with Session(engine) as session, session.begin():
            return ensure_demo_user(session, tmp_path)

    def users() -> dict[str, Any]:
        with Session(engine) as session:
            return all_users(session)

    def store(name: str, role: str, password: str) -> None:
        with Session(engine) as session, session.begin():
            upsert_dashboard_user(
                session, StoredDashboardUser(name, role, hash_password(password, rounds=4), None)
            )

    store("alice", "admin", "alice-password")
    password = ensure()
    found = users()
    assert found["demo"].role == "analyst" and authenticate(found, "demo", password) is not None
    assert authenticate(found, "alice", "alice-password") is not None  # other users untouched
    kept = tmp_path / DEMO_LOGIN_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert ensure() == password  # a re-run prints the same login
    # someone changed the demo user's password: the demo makes a new one that works
    store("demo", "analyst", "changed-by-someone")
    renewed = ensure()
    assert renewed != password and authenticate(users(), "demo", renewed) is not None
