"""Engines and sessions for PostgreSQL (production) and SQLite (the embedded default).

SQLite needs per-connection settings to behave like a server database for this
workload: WAL so the dashboard can read while the scorer writes, enforced foreign keys,
and a busy timeout so a writer waits for a lock instead of failing at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_CONNECT_TIMEOUT_S = 10


def normalise_url(url: str | URL) -> URL:
    """Parse `url`; a bare `postgresql://` means psycopg 3, the only PostgreSQL driver installed."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def redact(url: str | URL) -> str:
    """The URL for messages and logs: password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable: show nothing that might be a secret
        return "<unparsable database URL>"


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for `url`; for a SQLite file, its directory is created first."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        _ensure_sqlite_dir(parsed)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)  # survive a database restart between batches
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT_S)
    return create_engine(parsed, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (results outlive the transaction)."""
    return sessionmaker(engine, expire_on_commit=False)


def _ensure_sqlite_dir(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
    finally:
        cursor.close()
