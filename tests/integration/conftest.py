"""Real services for integration tests.

PostgreSQL: each test module that uses `postgres_url` gets its own database, named
finsent_test_<uuid hex>, created on the server at FINSENT_TEST_POSTGRES_URL (default: the
local trust-auth server) and dropped afterwards. A server that cannot be reached fails
the test: these tests exist to run against the real thing, never to be skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

POSTGRES_ADMIN_URL = os.environ.get(
    "FINSENT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {' '.join(str(exc).split())}")


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new empty database for the duration of the block; yields its SQLAlchemy URL."""
    name = f"finsent_test_{uuid.uuid4().hex}"
    with _admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with _admin_connection() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for this test module."""
    with fresh_postgres_database() as url:
        yield url
