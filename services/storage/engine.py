"""Engines and sessions for PostgreSQL (production) and SQLite (the embedded default).

SQLite needs per-connection settings to behave like a server database for this
workload: WAL so the dashboard can read while the scorer writes, enforced foreign keys,
and a busy timeout so a writer waits for a lock instead of failing at once.

PostgreSQL over TLS: FINSENT_DATABASE_SSLMODE, _SSLROOTCERT, _SSLCERT and _SSLKEY become
libpq connection parameters of every engine made here (psycopg passes them to libpq), so
certificate paths need not be spelled into the URL. The same parameters in the URL's query
(`?sslmode=verify-full&sslrootcert=...`) work too; giving one in both places is refused
rather than silently picking one.

A SQLite file is created (with its directory) by the engines of the commands that write:
`finsent db upgrade` and the services. A reader passes `create=False`, so that a typo in
FINSENT_DATABASE_URL is an error naming the path (`NoDatabaseError`), not a new empty database.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from services.settings import Settings

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


def postgres_tls_parameters(settings: Settings) -> dict[str, str]:
    """The libpq TLS parameters the settings give (FINSENT_DATABASE_SSLMODE & co.)."""
    values = {
        "sslmode": settings.database.database_sslmode,
        "sslrootcert": settings.database.database_sslrootcert,
        "sslcert": settings.database.database_sslcert,
        "sslkey": settings.database.database_sslkey,
    }
    return {
        name: str(value.expanduser().absolute()) if isinstance(value, Path) else value
        for name, value in values.items()
        if value is not None
    }


def merge_tls_parameters(url: URL, connect_args: dict[str, Any], tls: dict[str, str]) -> None:
    """Add `tls` to `connect_args`; `ArgumentError` when the URL's query names one of them too."""
    both = sorted(set(tls) & set(url.query))
    if both:
        raise ArgumentError(
            f"{both[0]} is given both in the URL and as FINSENT_DATABASE_{both[0].upper()}; keep one"
        )
    connect_args.update(tls)


class NoDatabaseError(OSError):
    """A reader was pointed at a database that is not there (a SQLite file that does not
    exist, or an in-memory one); nothing was created. An `OSError` (ENOENT) whose `strerror`
    is the whole message, so the CLI's database guard prints it as it prints a missing path."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOENT, message)


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL; None when `url` is not SQLite, is in memory, or is a
    `file:` URI (whose options decide where it lives)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite" or is_in_memory(parsed):
        return None
    database = parsed.database or ""
    if database.startswith("file:"):
        return None
    return Path(database).expanduser()


def is_in_memory(url: str | URL) -> bool:
    """Whether `url` is a SQLite database in memory (`sqlite://`, `sqlite:///:memory:`), which
    holds nothing between connections of different engines."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or (database.startswith("file:") and parsed.query.get("mode") == "memory")
    )


def require_database(url: str | URL) -> None:
    """`NoDatabaseError` when `url` names a SQLite file that does not exist; creates nothing.
    (A server database is not contacted: connecting says whether it is there.)"""
    file = sqlite_file(url)
    if file is not None and not file.exists():
        raise NoDatabaseError(f"no database at {file.absolute()} (run `finsent db upgrade` to create it)")


def make_engine(
    url: str | URL, *, tls: dict[str, str] | None = None, create: bool = True, **kwargs: Any
) -> Engine:
    """An engine for `url`. For a SQLite file, its directory is created first (connecting
    then creates the file); with `create=False` (readers: `db current`, list and show
    commands) a missing file is `NoDatabaseError` instead, and nothing is created. `tls`:
    libpq TLS parameters for PostgreSQL; None = the settings' (`postgres_tls_parameters`)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if create:
            _ensure_sqlite_dir(parsed)
        else:
            require_database(parsed)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)  # survive a database restart between batches
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT_S)
        if tls is None:
            from services.settings import get_settings

            tls = postgres_tls_parameters(get_settings())
        merge_tls_parameters(parsed, connect_args, tls)
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
