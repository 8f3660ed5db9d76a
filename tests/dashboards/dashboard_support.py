"""Fixtures and helpers of the dashboard tests: a seeded database per test, users, an
AppTest factory.

Test modules take the fixtures with `from dashboard_support import *`. There is no
conftest.py and no `__init__.py` here, on purpose: with an `__init__.py` pytest would import
this directory as the package `dashboards` and shadow the application package of that
name, and a conftest.py here would be imported as the top-level module `conftest`, which
other test modules import by that name for the root conftest's helpers. Helper modules
therefore have unique names (dashboard_seed, dashboard_support).

The seeded SQLite database is built once per session and copied for each test (tests write
labels, subscriptions and alert actions). Users get bcrypt cost 4, so logging in costs
milliseconds; the hashing code is the production code.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dashboard_seed as seed
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboards.auth import SESSION_KEY, login_state
from dashboards.users_file import UserEntry, hash_password
from services.storage import (
    StoredDashboardUser,
    add_missing_dashboard_users,
    make_engine,
    session_factory,
    upgrade_database,
)

# The integration suite owns the PostgreSQL helpers (create / drop a database per test);
# its package lives beside this directory.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from integration.conftest import fresh_postgres_database

__all__ = [
    "dashboard_env",
    "db_url",
    "fresh_postgres_url",
    "make_app",
    "seeded_template",
    "store_test_users",
]

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
PASSWORD = "correct horse battery"
USERS = {
    "vera": "viewer",
    "anna": "analyst",
    "adam": "admin",
}
OIDC_EMAIL = "olga@example.com"  # an OIDC-only analyst (no password)


_built: dict[str, Path] = {}


def _once(name: str, tmp_path_factory: pytest.TempPathFactory, build: Callable[[Path], None]) -> Path:
    """Build a session-wide file once, although each test module registers these fixtures anew."""
    if name not in _built:
        path = tmp_path_factory.mktemp(name) / name
        build(path)
        _built[name] = path
    return _built[name]


_hashes: dict[str, str] = {}


def _test_users() -> list[StoredDashboardUser]:
    """The test users, hashed once per session (a low bcrypt cost: they are for tests)."""
    if not _hashes:
        _hashes.update({name: hash_password(PASSWORD, rounds=4) for name in USERS})
    users = [StoredDashboardUser(name, role, _hashes[name], None) for name, role in USERS.items()]
    return [*users, StoredDashboardUser("olga", "analyst", None, OIDC_EMAIL)]


def store_test_users(url: str) -> None:
    """Put the test users into the database at `url` (migrated first); idempotent."""
    upgrade_database(url)
    engine = make_engine(url)
    try:
        with session_factory(engine).begin() as session:
            add_missing_dashboard_users(session, _test_users())
    finally:
        engine.dispose()


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (the integration suite's helper)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _once("finsent.db", tmp_path_factory, lambda path: seed.seed(f"sqlite:///{path}"))


@pytest.fixture
def db_url(seeded_template: Path, tmp_path: Path) -> str:
    copy = tmp_path / "finsent.db"
    shutil.copy(seeded_template, copy)
    return f"sqlite:///{copy}"


@pytest.fixture
def dashboard_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[str], None]:
    """Point the app (which reads Settings on every run) at a database holding the test users."""

    def use(url: str) -> None:
        store_test_users(url)
        monkeypatch.setenv("FINSENT_DATABASE_URL", url)
        monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "home"))
        monkeypatch.delenv("FINSENT_KAFKA_BOOTSTRAP", raising=False)
        st.cache_data.clear()

    return use


AppFactory = Callable[..., AppTest]


@pytest.fixture
def make_app(dashboard_env: Callable[[str], None], db_url: str) -> Iterator[AppFactory]:
    """`make_app("anna")`: the whole app (login gate, navigation) with that user logged in;
    `make_app(None)`: nobody logged in. Not yet run."""
    dashboard_env(db_url)

    def make(user: str | None, *, url: str | None = None) -> AppTest:
        if url is not None:
            dashboard_env(url)
        at = AppTest.from_file(str(APP), default_timeout=30)
        if user is not None:
            at.session_state[SESSION_KEY] = login_state(
                UserEntry(user, USERS[user], _stored_hash(user))  # type: ignore[arg-type]
            )
        return at

    yield make


def _stored_hash(name: str) -> str:
    (user,) = [u for u in _test_users() if u.name == name]
    assert user.password_hash is not None
    return user.password_hash


def open_page(at: AppTest, page: str) -> AppTest:
    """Run the app once (navigation registers its pages), then switch to `page` and run it."""
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def walk(node: Any) -> Iterator[Any]:
    """Every element and block of a rendered app, depth first."""
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error] + [e.value for e in at.exception]
