"""The leader lock (services.storage.leadership) on a real PostgreSQL database: one holder,
a standby that gets it when the holder's connection ends, and a holder that notices when
its connection was cut (here by pg_terminate_backend, as a server restart would)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from services.storage import LeaderLock, make_engine

pytestmark = pytest.mark.integration


def terminate_holder(url: str) -> int:
    """Cut the connections holding an advisory lock on this database, from the server side."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND granted "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    )
                ).all()
            )
    finally:
        engine.dispose()


def test_one_holder_a_standby_and_a_cut_connection(fresh_postgres_url: str) -> None:
    engines = [make_engine(fresh_postgres_url, poolclass=NullPool) for _ in range(2)]
    try:
        first, second = (LeaderLock(e, "finsent-test-lock") for e in engines)
        assert first.try_acquire() and first.still_held()
        assert not second.try_acquire()  # taken: standby
        # the standby waits, told once, until the holder lets go
        told: list[int] = []
        got: list[bool] = []
        waiter = threading.Thread(
            target=lambda: got.append(
                second.wait(threading.Event(), poll_seconds=0.1, on_standby=lambda: told.append(1))
            )
        )
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and told == [1]
        first.release()
        waiter.join(5)
        assert got == [True] and second.still_held()

        # the holder's connection is cut: it notices, and another instance takes the lock
        assert terminate_holder(fresh_postgres_url) == 1
        assert not second.still_held() and not second.held
        assert first.try_acquire()
        assert not second.try_acquire()
        # a standby asked to stop gives up without the lock
        stop = threading.Event()
        stop.set()
        assert second.wait(stop, poll_seconds=0.1) is False and not second.held
        first.release()
        assert second.try_acquire() and second.still_held()
    finally:
        for e in engines:
            e.dispose()


def test_sqlite_is_always_the_leader(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'finsent.db'}")
    try:
        a, b = LeaderLock(engine, "x"), LeaderLock(engine, "x")
        assert a.try_acquire() and b.try_acquire() and a.still_held() and b.held
    finally:
        engine.dispose()
