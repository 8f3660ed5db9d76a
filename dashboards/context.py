"""What every page needs: settings, the database, and cached queries.

Settings are read on every script run (a few milliseconds) rather than once per process, so
the same process can serve a changed environment (and tests can point each app at its own
database). The engine is a process-wide resource per database URL. Query results are
cached with `st.cache_data` for `FINSENT_DASHBOARD_CACHE_SECONDS`, keyed by the database URL,
the query function and its arguments: many analysts on the same range cost one query per
TTL. Any write clears the caches (`invalidate`), so the writer sees their change at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from services.settings import Settings
from services.storage import make_engine, session_factory

T = TypeVar("T")

# PostgreSQL cancels a dashboard statement that runs longer than this (`statement_timeout`,
# set on every connection of the dashboard's engine). Analysts choose the filters (any date
# range, any search), so they choose a query's cost too, and one query must not hold a
# connection and a core for minutes while the others wait. The slowest query measured on a
# million stories takes 1.3 s (benchmarks/results/dashboard_queries.md). A constant, not a
# setting: services/settings.py has none for it yet.
STATEMENT_TIMEOUT_MS = 30_000

_lock = threading.Lock()
_cached: dict[float, Callable[..., Any]] = {}
_QUERIES: dict[str, Callable[..., Any]] = {}


def load_settings() -> Settings:
    return Settings()


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _limit_statements)
    return engine


def _limit_statements(dbapi_connection: Any, _record: Any) -> None:
    """STATEMENT_TIMEOUT_MS for the connection's whole life (committed: a pool's rollback on
    return would undo a SET made in a transaction)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS:d}")
    finally:
        cursor.close()
    dbapi_connection.commit()


def engine(settings: Settings) -> Engine:
    return _engine(settings.database.database_url)


def sessions(settings: Settings) -> sessionmaker[Session]:
    return session_factory(engine(settings))


def _run(url: str, name: str, kwargs: dict[str, Any]) -> Any:
    fn = _QUERIES[name]
    with session_factory(_engine(url))() as session:
        return fn(session, **kwargs)


def _cached_runner(ttl: float) -> Callable[..., Any]:
    with _lock:
        runner = _cached.get(ttl)
        if runner is None:
            runner = st.cache_data(ttl=ttl, show_spinner=False, max_entries=512)(_run)
            _cached[ttl] = runner
        return runner


def cached_query(settings: Settings, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`fn(session, **kwargs)`, cached for the configured TTL (not cached when it is 0).

    `fn` must be a module-level query function of dashboards.data and `kwargs` hashable by
    Streamlit (scalars, datetimes, tuples, frozen dataclasses)."""
    name = f"{fn.__module__}.{fn.__qualname__}"
    _QUERIES.setdefault(name, fn)
    if settings.dashboard.dashboard_cache_seconds <= 0:
        return _run(settings.database.database_url, name, kwargs)  # type: ignore[no-any-return]
    runner = _cached_runner(settings.dashboard.dashboard_cache_seconds)
    return runner(settings.database.database_url, name, kwargs)  # type: ignore[no-any-return]


def fresh_query(settings: Settings, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """`fn(session, **kwargs)` uncached (the live panel, and reads right before a write)."""
    with sessions(settings)() as session:
        return fn(session, **kwargs)


def invalidate() -> None:
    """Drop every cached query result: called after each write."""
    st.cache_data.clear()
