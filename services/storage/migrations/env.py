"""Alembic environment: migrates the connection handed over by services.storage.migrate.

Without one (plain `alembic` with an ini file) it connects to `sqlalchemy.url`, else to
FINSENT_DATABASE_URL. SQLite cannot ALTER most things in place, so operations are
rendered in batch mode there (copy-and-move tables).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from services.storage import (  # noqa: F401  (register their tables on Base)
    alert_models,
    dashboard_models,
    delivery_models,
    learning_models,
    story_models,
)
from services.storage.engine import make_engine
from services.storage.migrate import include_in_autogenerate
from services.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from services.settings import get_settings

    return get_settings().database.database_url


def run_offline() -> None:
    """`--sql` mode: print the DDL instead of running it."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_object=include_in_autogenerate,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url(), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
