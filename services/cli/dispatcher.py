"""`finsent dispatcher`: delivers alert notifications to subscriptions until stopped.

Reads the alert outbox at FINSENT_DATABASE_URL (migrating the schema first), fans each
notification out to the matching subscriptions and sends them with retries (see
services.delivery). Serves Prometheus metrics and a health check on
FINSENT_DISPATCHER_METRICS_HOST:FINSENT_DISPATCHER_METRICS_PORT. SIGTERM or Ctrl-C stops it
after the sends in flight are recorded. `--once` runs one cycle and exits (cron, tests).
"""

from __future__ import annotations

import signal
import socket
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.common import DatabaseUrlOption
from services.cli.errors import fail
from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from services.delivery.dispatcher import Dispatcher


def dispatcher(
    once: Annotated[bool, typer.Option("--once", help="Run one cycle (fan out, send what is due)")] = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Deliver alert notifications (webhook, Slack, e-mail, log) with retries until stopped."""
    from services.cli.common import SERVICE_DATABASE_WAIT_SECONDS, guarded_database, quiet_alembic

    quiet_alembic()
    settings = get_settings()
    sock = None if once else _metrics_socket(settings)

    from sqlalchemy.exc import DBAPIError

    from services.delivery.dispatcher import Dispatcher
    from services.storage import make_engine, redact, session_factory, upgrade_database

    # The service waits for a database that is briefly away; one cycle (cron, a test) fails at once.
    wait = 0.0 if once else SERVICE_DATABASE_WAIT_SECONDS
    shown, _revision = guarded_database(upgrade_database, wait_seconds=wait)
    engine = make_engine(settings.database.database_url)
    worker = Dispatcher(session_factory(engine), settings)
    try:
        if once:
            try:
                stats = worker.run_once()
            except DBAPIError as exc:
                fail(
                    f"database {redact(settings.database.database_url)}: "
                    f"{' '.join(str(exc.orig or exc).split())}"
                )
            typer.echo(
                f"dispatched {stats.outbox_rows} notifications into {stats.created} deliveries; "
                f"{stats.sends} sends: {stats.delivered} delivered, {stats.failed} to retry, "
                f"{stats.dead} dead"
            )
            return
        assert sock is not None
        _serve(worker, sock, shown)
    finally:
        worker.close()
        engine.dispose()


def _serve(worker: Dispatcher, sock: socket.socket, shown: str) -> None:
    from services.delivery.health import dispatcher_health
    from services.probes import ProbeServer

    server = ProbeServer(
        sock,
        worker.metrics.registry,
        lambda: dispatcher_health(worker.metrics.snapshot()),
        name="dispatcher-probes",
    )
    server.start()
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(
        f"dispatching alert notifications from {shown}; metrics {server.url}/metrics, "
        f"health {server.url}/health; Ctrl-C stops",
        flush=True,
    )
    try:
        worker.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()


def _metrics_socket(settings: Settings) -> socket.socket:
    """Bound now, so that a taken port fails in one line before anything starts."""
    from services.probes import bind_socket

    host, port = settings.delivery.dispatcher_metrics_host, settings.delivery.dispatcher_metrics_port
    try:
        return bind_socket(host, port)
    except OSError as exc:
        fail(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set "
            "FINSENT_DISPATCHER_METRICS_PORT to a free port (0 picks one) or "
            "FINSENT_DISPATCHER_METRICS_HOST to an address of this machine"
        )
