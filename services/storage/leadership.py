"""One active instance per database, the others on standby: a PostgreSQL session advisory lock.

The alerter and the scheduler each run as two (or more) replicas; only the one holding its
lock works, the others poll the lock every FINSENT_STANDBY_POLL_SECONDS and take over the
moment they get it.

Why a session advisory lock and not a lease row with a heartbeat and an expiry:

- PostgreSQL releases a session lock the moment the holder's connection ends — a crashed or
  SIGKILLed process, a container stopped, a pod evicted — so a standby takes over within one
  poll interval. A lease could only be taken over after its expiry, so it is never faster.
- A lease needs fencing to be correct: a holder paused past its expiry (GC, SIGSTOP, a
  frozen VM) wakes up believing it still leads and writes beside its successor, unless every
  write checks a fencing token. The lock has no expiry to outlive: whoever holds it leads.
- A holder that vanishes with its host (power loss, network cut) leaves a half-open TCP
  connection; the lock connection sets the server-side TCP keepalives (`tcp_keepalives_*`,
  settable by any role) so the server drops it after about LOCK_KEEPALIVE_SECONDS.
- A holder that hangs while connected keeps the lock, as it would keep a lease whose
  heartbeat runs in another thread. This is the one case a lease with an expiry on the
  work loop would hand over by itself; here the alerter's /health turns `degraded` once its
  loop stalls, and restarting the process (an operator alert on it, or a liveness check
  that uses it) releases the lock. The liveness probes shipped ask /metrics, so that a
  database outage does not restart every pod: a hang is not taken over automatically.

The leader checks its lock connection (`still_held`) as it works: if PostgreSQL restarted or
the connection broke, the lock is gone and a standby may already lead, so it stops.

SQLite is the embedded, single-host database: there is no second replica to coordinate
with, so the lock is granted at once (today's behaviour).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

# The server gives up a silent client after idle + interval * count seconds.
LOCK_KEEPALIVE_IDLE = 5
LOCK_KEEPALIVE_INTERVAL = 2
LOCK_KEEPALIVE_COUNT = 3
LOCK_KEEPALIVE_SECONDS = LOCK_KEEPALIVE_IDLE + LOCK_KEEPALIVE_INTERVAL * LOCK_KEEPALIVE_COUNT


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock, the same in every process."""
    return zlib.crc32(name.encode()) - 2**31


class LeaderLock:
    """The advisory lock `name` on `engine`'s database, held on a connection of its own."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.key = lock_key(name)
        self._conn: Connection | None = None
        self.embedded = engine.dialect.name != "postgresql"

    @property
    def held(self) -> bool:
        return self.embedded or self._conn is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this instance now holds it."""
        if self.held:
            return True
        conn = self.engine.connect()
        try:
            for name, value in (
                ("tcp_keepalives_idle", LOCK_KEEPALIVE_IDLE),
                ("tcp_keepalives_interval", LOCK_KEEPALIVE_INTERVAL),
                ("tcp_keepalives_count", LOCK_KEEPALIVE_COUNT),
            ):
                conn.execute(
                    text("SELECT set_config(:name, :value, false)"), {"name": name, "value": str(value)}
                )
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        """Whether the lock connection is alive (so the lock is still ours). A broken
        connection means PostgreSQL released the lock: another instance may lead now."""
        if self.embedded:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1")).scalar()
            self._conn.commit()
        except Exception as exc:
            log.error("lost the %s lock connection: %s", self.name, " ".join(str(exc).split())[:300])
            self._release_quietly()
            return False
        return True

    def release(self) -> None:
        """Give the lock up (closing its connection releases it)."""
        self._release_quietly()

    def _release_quietly(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection: the lock is gone already
                conn.close()

    def wait(
        self,
        stop: threading.Event,
        *,
        poll_seconds: float,
        on_standby: Callable[[], None] = lambda: None,
        on_error: Callable[[BaseException], None] | None = None,
        on_taken: Callable[[], None] = lambda: None,
    ) -> bool:
        """Block until the lock is ours (True) or `stop` is set (False). `on_standby` is called
        once, when the first try finds the lock taken; `on_taken` after every try that finds
        it taken (the database answered). A database that cannot be reached is retried at the
        same interval (`on_error` is told) rather than ending the standby."""
        told = False
        while not stop.is_set():
            try:
                if self.try_acquire():
                    return True
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(exc)
            else:
                if not told:
                    told = True
                    on_standby()
                on_taken()
            stop.wait(poll_seconds)
        return False
