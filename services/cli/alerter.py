"""`finsent alerter`: the negative-spike alerter (services/alerting), one active per database.

Run two (or more) for a standby: the first to take the database lock is active, the others
wait (status `standby` on /health, HTTP 200; `finsent_alerter_active` 0) and the first to
get the lock after the active one dies takes over (services.storage.leadership).

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
import threading
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
    from services.cli.common import (
        SERVICE_DATABASE_WAIT_SECONDS,
        broker_errors,
        configured_bootstrap,
        guarded_database,
        quiet_alembic,
    )

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

    names = [settings.kafka.topic_news_scored, settings.kafka.topic_news_dlq, settings.kafka.topic_alerts]
    with broker_errors():
        partitions = describe_topics(bootstrap, names, timeout=settings.kafka.kafka_timeout_seconds)
    missing = [name for name, count in partitions.items() if count is None]
    if missing:
        fail(f"topics {', '.join(missing)} do not exist on {bootstrap}; create them with `finsent init`")

    from services.storage import make_engine, upgrade_database

    shown, _revision = guarded_database(upgrade_database, wait_seconds=SERVICE_DATABASE_WAIT_SECONDS)

    from services.alerting.metrics import AlerterMetrics
    from services.alerting.service import Alerter, LeadershipLost
    from services.alerting.store import alerter_lock_name
    from services.probes import ProbeServer
    from services.storage import LeaderLock

    engine = make_engine(settings.database.database_url)
    lock = LeaderLock(engine, alerter_lock_name(config.rule))
    metrics = AlerterMetrics(stall_seconds=max(120.0, 10 * settings.alerts.alerter_tick_seconds))
    stop = threading.Event()
    running: list[Alerter] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        for service in running:
            service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = ProbeServer(metrics_socket, metrics.registry, metrics.health, name="alerter-probes")
    print(
        f"alerting on {settings.kafka.topic_news_scored} at {bootstrap} "
        f"(group {settings.alerts.alerter_group}) into {shown}, publishing to {settings.kafka.topic_alerts}; "
        f"metrics {server.url}/metrics, health {server.url}/health; "
        "Ctrl-C stops",
        flush=True,
    )

    def on_standby() -> None:
        metrics.standby()
        log.info("standby: another alerter holds the lock", extra={"lock": lock.name})
        print(
            f"standby: another alerter is active on {shown}; polling its lock every "
            f"{settings.runtime.standby_poll_seconds:g} s to take over",
            flush=True,
        )

    def on_database_error(exc: BaseException) -> None:
        log.warning(
            "standby: cannot reach the database to try the lock: %s", " ".join(str(exc).split())[:300]
        )

    try:
        with server, broker_errors():
            while lock.wait(
                stop,
                poll_seconds=settings.runtime.standby_poll_seconds,
                on_standby=on_standby,
                on_error=on_database_error,
            ):
                metrics.became_active()
                log.info("active: this alerter holds the lock", extra={"lock": lock.name})
                print("active: resuming from the checkpoint and the group's committed offsets", flush=True)
                service = Alerter(
                    settings, bootstrap=bootstrap, engine=engine, metrics=metrics, config=config, lock=lock
                )
                running[:] = [service]
                if stop.is_set():
                    break
                try:
                    service.run()
                except LeadershipLost as exc:
                    log.error("back to standby: %s", exc)
                    lock.release()
                    continue
                break
    except Exception as exc:  # a bug, not an outage (those are retried): stop, batch unacknowledged
        log.critical("the alerter stopped on an unexpected error", exc_info=exc)
        fail(f"alerter stopped: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", code=EXIT_SOFTWARE)
    finally:
        lock.release()
        engine.dispose()


def _metrics_socket(settings: Settings) -> socket.socket:
    """Bound now, so that a taken port fails in one line before the group is joined."""
    from services.probes import bind_socket

    host, port = settings.alerts.alerter_metrics_host, settings.alerts.alerter_metrics_port
    try:
        return bind_socket(host, port)
    except OSError as exc:
        fail(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set FINSENT_ALERTER_METRICS_PORT "
            "to a free port (0 picks one) or FINSENT_ALERTER_METRICS_HOST to an address of this machine"
        )
