"""Two `finsent scheduler` processes on one PostgreSQL database: one active, the other on
standby; SIGKILL the active one and the standby starts the schedule within seconds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .pipeline import CliProcess, migrated_engine, wait_for

pytestmark = pytest.mark.integration


class SchedulerProcess(CliProcess):
    command = "scheduler"


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
            wait_for(
                first.log,
                lambda t: "active: retraining scheduler on" in t,
                timeout=60,
                what="a active",
                workers=[first],
            )
            with SchedulerProcess(env, tmp_path / "b.log", name="scheduler-b") as second:
                wait_for(
                    second.log,
                    lambda t: "standby: another scheduler is active" in t,
                    timeout=60,
                    what="b on standby",
                    workers=[second],
                )
                time.sleep(3)  # three polls: still standby while the first one lives
                assert "active:" not in second.log()
                first.kill()
                killed = time.monotonic()
                wait_for(
                    second.log,
                    lambda t: "active: retraining scheduler on" in t,
                    timeout=30,
                    what="b to take over",
                    workers=[second],
                )
                took = time.monotonic() - killed
                print(f"scheduler takeover after {took:.2f} s")
                assert took < 5.0, took
                assert second.stop() == 0
