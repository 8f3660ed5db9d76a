"""Running the Alembic migrations from code: `finsent db upgrade`, worker start-up, tests.

The Alembic configuration is built here rather than read from an alembic.ini, so it
works from an installed package and from any working directory.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from services.storage.engine import NoDatabaseError, is_in_memory, make_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Workers that start together must not race to create the same tables (PostgreSQL only).
_MIGRATION_LOCK_KEY = 0x66696E73  # "fins"
# What the migrations create but the ORM does not model: indexes SQLite cannot hold
# (headline full-text search, drill-down influence order, the story lookup's GIN index on
# band keys; PostgreSQL only).
UNMODELLED_INDEXES = frozenset(
    {"ix_news_items_headline_fts", "ix_predictions_influence", "ix_story_members_band_keys"}
)
UNMODELLED_TABLES: frozenset[str] = frozenset()


def include_in_autogenerate(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic `include_object` hook: leave the unmodelled indexes out of schema comparisons."""
    if type_ == "table":
        return name not in UNMODELLED_TABLES
    return not (type_ == "index" and name in UNMODELLED_INDEXES)


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest migration shipped with this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade_database(url: str | URL, *, revision: str = "head") -> str | None:
    """Migrate the database at `url` to `revision`; return the revision it is at afterwards."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            command.upgrade(alembic_config(conn), revision)
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def current_revision(url: str | URL, *, must_exist: bool = False) -> str | None:
    """The revision the database at `url` is at; None for a database never migrated. Creates
    nothing: a SQLite file that does not exist is None too, or, with `must_exist` (`finsent db
    current`), `NoDatabaseError`, as is an in-memory database, which has no schema to check."""
    if must_exist and is_in_memory(url):
        raise NoDatabaseError(
            "an in-memory database has no schema to check (each connection starts empty); "
            "set FINSENT_DATABASE_URL to a file (sqlite:///path.db) or a server"
        )
    try:
        engine = make_engine(url, poolclass=NullPool, create=False)
    except NoDatabaseError:
        if must_exist:
            raise
        return None
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
