"""Two `finsent scheduler` processes on one PostgreSQL database: one active, the other on
standby; SIGKILL the active one and the standby starts the schedule within seconds. Their
/health says which is which, and 503 while a scheduler cannot reach its database."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from .pipeline import CliProcess, migrated_engine, wait_for
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


class SchedulerProcess(CliProcess):
    command = "scheduler"


ACTIVE = "active: retraining scheduler on"
STANDBY = "standby: another scheduler is active"


def wait_log(scheduler: SchedulerProcess, line: str, what: str, timeout: float = 60) -> None:
    """Until the scheduler's log holds `line` (ACTIVE or STANDBY)."""
    wait_for(scheduler.log, lambda t: line in t, timeout=timeout, what=what, workers=[scheduler])


def scheduler_env(database_url: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FINSENT_HOME": str(home),
        "FINSENT_DATABASE_URL": database_url,
        "FINSENT_SCHEDULER_METRICS_PORT": "0",
        "FINSENT_RETRAIN_INTERVAL_MINUTES": "600",
        "FINSENT_STANDBY_POLL_SECONDS": "1",
        "FINSENT_LOG_LEVEL": "INFO",
    }


def test_the_standby_scheduler_takes_over_a_killed_one(fresh_postgres_url: str, tmp_path: Path) -> None:
    with migrated_engine(fresh_postgres_url):
        env = scheduler_env(fresh_postgres_url, tmp_path / "home")
        with SchedulerProcess(env, tmp_path / "a.log", name="scheduler-a") as first:
            wait_log(first, ACTIVE, "a active")
            with SchedulerProcess(env, tmp_path / "b.log", name="scheduler-b") as second:
                wait_log(second, STANDBY, "b on standby")
                time.sleep(3)  # three polls: still standby while the first one lives
                assert "active:" not in second.log()
                first.kill()
                killed = time.monotonic()
                wait_log(second, ACTIVE, "b to take over", timeout=30)
                took = time.monotonic() - killed
                print(f"scheduler takeover after {took:.2f} s")
                assert took < 5.0, took
                assert second.stop() == 0


def health(scheduler: SchedulerProcess) -> tuple[int, dict[str, Any]] | None:
    """GET /health of the scheduler (its URL from the line it prints at start): the HTTP code
    and the JSON body; None before it serves."""
    found = re.search(r"health (http://\S+/health)", scheduler.log())
    if found is None:
        return None
    try:
        with urllib.request.urlopen(found[1], timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_health(scheduler: SchedulerProcess, status: str, what: str, timeout: float = 30) -> dict[str, Any]:
    """Until /health answers `status` (and the code that goes with it); its body."""
    answer = wait_for(
        lambda: health(scheduler),
        lambda h: h is not None and h[1]["status"] == status,
        timeout=timeout,
        what=what,
        workers=[scheduler],
    )
    assert answer is not None and answer[0] == (503 if status in ("starting", "degraded") else 200), answer
    return answer[1]


def test_health_reports_active_standby_and_an_unreachable_database(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    """`a` reaches PostgreSQL through a proxy, `b` directly. Cut the proxy: `a` answers 503
    `degraded` (database failing) and `b`, whose lock `a` lost with its connection, takes over
    (200 `ok`); restore it: `a` finds the lock taken and is a 200 `standby` again. `b` was
    given `--bootstrap-server`: where its promotions are announced."""
    target = make_url(fresh_postgres_url)
    with (
        migrated_engine(fresh_postgres_url),
        TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy,
    ):
        via_proxy = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        env = scheduler_env(fresh_postgres_url, tmp_path / "home")
        announce = ["--bootstrap-server", "kafka.example:9092"]  # not contacted until a promotion
        with SchedulerProcess({**env, "FINSENT_DATABASE_URL": via_proxy}, tmp_path / "a.log", name="a") as a:
            wait_log(a, ACTIVE, "a active")
            body = wait_health(a, "ok", "a ok")
            assert (body["role"], body["database"]) == ("active", "ok")
            assert body["next_run_at"] is not None
            with SchedulerProcess(env, tmp_path / "b.log", name="b", args=announce) as b:
                body = wait_health(b, "standby", "b on standby", timeout=60)
                assert (body["role"], body["database"], body["next_run_at"]) == ("standby", "ok", None)
                proxy.outage()
                body = wait_health(a, "degraded", "a reports its database unreachable")
                assert body["database"] == "failing", body
                wait_log(b, ACTIVE, "b takes over", timeout=30)
                assert wait_health(b, "ok", "b ok")["role"] == "active"
                assert "promotions announced on model.events at kafka.example:9092" in b.log()
                proxy.restore()
                body = wait_health(a, "standby", "a back on standby")
                assert (body["role"], body["database"]) == ("standby", "ok")
                assert b.stop() == 0
