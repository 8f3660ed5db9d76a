"""`finsent alerter`: the negative-spike alerter (services/alerting), one per deployment.

Needs FINSENT_KAFKA_BOOTSTRAP and the topics news.scored, news.dlq and alerts (`finsent
init`); migrates the database at FINSENT_DATABASE_URL first. Reads news.scored in the
consumer group FINSENT_ALERTER_GROUP, writes buckets, alerts and the outbox, and publishes
to the alerts topic. SIGTERM or Ctrl-C stops it after the step in flight. Serves
Prometheus metrics and a health check on FINSENT_ALERTER_METRICS_HOST:FINSENT_ALERTER_METRICS_PORT.
"""

from __future__ import annotations

import logging
import signal
import socket
from types import FrameType

from services.cli.common import BootstrapServerOption, DatabaseUrlOption
from services.cli.errors import fail
from services.settings import Settings, get_settings

log = logging.getLogger(__name__)
EXIT_SOFTWARE = 70  # as the scorer: the process ended with its batch unacknowledged


def alerter(
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Watch news.scored for negative-sentiment spikes; write alerts and publish them to `alerts`."""
    from services.cli.common import broker_errors, configured_bootstrap, guarded_database, quiet_alembic

    quiet_alembic()
    settings = get_settings()
    bootstrap = configured_bootstrap()
    from services.alerting.config import alerter_config

    try:
        config = alerter_config(settings)
    except ValueError as exc:
        fail(f"invalid alert settings: {exc}")
    metrics_socket = _metrics_socket(settings)
    from services.broker.topics import describe_topics

    names = [settings.topic_news_scored, settings.topic_news_dlq, settings.topic_alerts]
    with broker_errors():
        partitions = describe_topics(bootstrap, names, timeout=settings.kafka_timeout_seconds)
    missing = [name for name, count in partitions.items() if count is None]
    if missing:
        fail(f"topics {', '.join(missing)} do not exist on {bootstrap}; create them with `finsent init`")

    from services.storage import make_engine, upgrade_database

    shown, _revision = guarded_database(upgrade_database)

    from services.alerting.metrics import AlerterMetrics
    from services.alerting.service import Alerter
    from services.alerting.store import AlerterLocked, acquire_alerter_lock
    from services.probes import ProbeServer

    engine = make_engine(settings.database_url)
    try:
        lock = guarded_database(lambda _url: acquire_alerter_lock(engine, rule=config.rule))[1]
    except AlerterLocked as exc:
        engine.dispose()
        fail(f"database {shown}: {exc}")
    metrics = AlerterMetrics(stall_seconds=max(120.0, 10 * settings.alerter_tick_seconds))
    service = Alerter(settings, bootstrap=bootstrap, engine=engine, metrics=metrics, config=config)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = ProbeServer(metrics_socket, metrics.registry, metrics.health, name="alerter-probes")
    print(
        f"alerting on {settings.topic_news_scored} at {bootstrap} (group {settings.alerter_group}) "
        f"into {shown}, publishing to {settings.topic_alerts}; "
        f"metrics {server.url}/metrics, health {server.url}/health; "
        "Ctrl-C stops",
        flush=True,
    )
    try:
        with server, broker_errors():
            service.run()
    except Exception as exc:  # a bug, not an outage (those are retried): stop, batch unacknowledged
        log.critical("the alerter stopped on an unexpected error", exc_info=exc)
        fail(f"alerter stopped: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", code=EXIT_SOFTWARE)
    finally:
        if lock is not None:
            lock.close()
        engine.dispose()


def _metrics_socket(settings: Settings) -> socket.socket:
    """Bound now, so that a taken port fails in one line before the group is joined."""
    from services.probes import bind_socket

    host, port = settings.alerter_metrics_host, settings.alerter_metrics_port
    try:
        return bind_socket(host, port)
    except OSError as exc:
        fail(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set FINSENT_ALERTER_METRICS_PORT "
            "to a free port (0 picks one) or FINSENT_ALERTER_METRICS_HOST to an address of this machine"
        )
