"""A service started while its database is unreachable waits for it instead of exiting.

Found by the chaos run (benchmarks/chaos.py): a worker replaced during a database outage
exited at once with "connection refused" (exit 2), so the pipeline lost a worker for good
whenever the orchestrator's restart landed in the outage. `finsent dispatcher` stands for
the three services (worker, alerter, dispatcher share the start-up path,
services.cli.common.guarded_database with SERVICE_DATABASE_WAIT_SECONDS); it needs no
model, so the test is quick.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from .pipeline import CliProcess, wait_for
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

OUTAGE_S = 4.0


class Dispatcher(CliProcess):
    command = "dispatcher"


def test_a_service_started_during_a_database_outage_waits_and_then_migrates_and_runs(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    target = make_url(fresh_postgres_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        proxy.outage()  # nothing answers on the proxy's port: connection refused
        via_proxy = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        env = {
            **os.environ,
            "FINSENT_HOME": str(tmp_path / "home"),
            "FINSENT_DATABASE_URL": via_proxy,
            "FINSENT_DISPATCHER_METRICS_PORT": "0",
            "FINSENT_DISPATCHER_POLL_SECONDS": "0.5",
        }
        with Dispatcher(env, tmp_path / "dispatcher.log") as dispatcher:
            wait_for(
                dispatcher.log,
                lambda text: "unreachable" in text,
                timeout=60,
                what="the dispatcher reports the database unreachable",
                workers=[dispatcher],  # type: ignore[list-item]
            )
            time.sleep(OUTAGE_S)
            dispatcher.assert_alive()  # before the fix: exited with code 2 at the first refusal
            proxy.restore()
            engine = create_engine(fresh_postgres_url)
            try:
                wait_for(
                    lambda: "deliveries" in inspect(engine).get_table_names(),
                    bool,
                    timeout=60,
                    what="the dispatcher migrates the database once it is back",
                    workers=[dispatcher],  # type: ignore[list-item]
                )
            finally:
                engine.dispose()
            time.sleep(1.0)
            dispatcher.assert_alive()
            assert "retrying in" in dispatcher.log()
            assert dispatcher.stop() == 0, dispatcher.tail()


def test_a_service_whose_database_refuses_it_still_fails_at_once(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    """Waiting is for an unreachable server only: a database that does not exist is an error
    to report, not to wait out."""
    missing = (
        make_url(fresh_postgres_url)
        .set(database="finsent_no_such_database")
        .render_as_string(hide_password=False)
    )
    env = {
        **os.environ,
        "FINSENT_HOME": str(tmp_path / "home"),
        "FINSENT_DATABASE_URL": missing,
        "FINSENT_DISPATCHER_METRICS_PORT": "0",
    }
    started = time.monotonic()
    dispatcher = Dispatcher(env, tmp_path / "dispatcher.log")
    code = dispatcher.proc.wait(timeout=60)
    assert code == 2, dispatcher.tail()
    assert time.monotonic() - started < 30
    assert "does not exist" in dispatcher.log()
    assert "retrying" not in dispatcher.log()
