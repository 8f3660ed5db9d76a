"""`finsent retrain --now` and `finsent scheduler`: retraining once, or on a schedule.

Both migrate the database at FINSENT_DATABASE_URL first. A run needs a champion in the
registry (`finsent models register DIR --champion`) and at least
FINSENT_RETRAIN_MIN_NEW_LABELS new labels (`finsent labels import FILE`), unless forced.
A promotion is announced on model.events at FINSENT_KAFKA_BOOTSTRAP (`--bootstrap-server`);
without a broker the workers find it by polling the registry.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.common import BootstrapServerOption, DatabaseUrlOption, RetrainMethodOption
from services.cli.errors import fail
from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from services.learning.scheduler_metrics import SchedulerMetrics
    from services.storage import LeaderLock

log = logging.getLogger(__name__)
EXIT_REJECTED = 3  # the run completed, but its challenger failed the gate


def retrain(
    now: Annotated[
        bool, typer.Option("--now", help="Run one retraining now (required: says what you mean)")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Train even with fewer new labels than FINSENT_RETRAIN_MIN_NEW_LABELS"),
    ] = False,
    method: RetrainMethodOption = None,
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Retrain once: new labels + replay → challenger → holdout gate → promote or reject.

    Exit code 0 when the challenger was promoted or the run was skipped (the reason is
    printed), 3 when the gate rejected it, 1 when the run failed.
    """
    from services.cli.common import guarded_database, quiet_alembic

    if not now:
        fail(
            "say `finsent retrain --now` to run a retraining now, or run `finsent scheduler` for the schedule"
        )
    quiet_alembic()
    settings = get_settings()
    from services.learning.retrain import run_retraining
    from services.storage import make_engine, upgrade_database

    shown, _revision = guarded_database(upgrade_database)
    engine = make_engine(settings.database.database_url)
    try:
        outcome = guarded_database(
            lambda _url: run_retraining(settings, engine, trigger="manual", force=force)
        )[1]
    finally:
        engine.dispose()
    typer.echo(f"retraining run {outcome.run_id} on {shown}: {outcome.status}")
    typer.echo(f"  reason: {outcome.reason}")
    if outcome.champion:
        typer.echo(f"  champion before: {outcome.champion}")
    if outcome.challenger:
        typer.echo(f"  challenger: {outcome.challenger}")
    if outcome.status == "promoted":
        typer.echo(f"  {_announced(settings, bool(outcome.details.get('announced')))}")
    if "method" in outcome.details:
        typer.echo(f"  method: {outcome.details['method']}")
    for key in ("data_seconds", "train_seconds", "evaluate_seconds"):
        if key in outcome.details:
            typer.echo(f"  {key.replace('_', ' ')}: {outcome.details[key]}")
    if outcome.status == "failed":
        raise typer.Exit(1)
    if outcome.status == "rejected":
        raise typer.Exit(EXIT_REJECTED)


def scheduler(
    bootstrap_server: BootstrapServerOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Run the retraining on FINSENT_RETRAIN_CRON (or every FINSENT_RETRAIN_INTERVAL_MINUTES) until stopped.

    One scheduler per database is active; run a second one as a standby: it waits for the
    database lock and takes over when the active one stops or dies. Serves Prometheus
    metrics and a health check (`ok` active, `standby`, 503 while starting or while the
    database is away) on FINSENT_SCHEDULER_METRICS_HOST:FINSENT_SCHEDULER_METRICS_PORT.
    """
    from services.cli.common import guarded_database, quiet_alembic

    quiet_alembic()
    settings = get_settings()
    from services.learning.scheduler import SCHEDULER_LOCK, make_trigger
    from services.storage import LeaderLock, make_engine, upgrade_database

    try:
        make_trigger(settings)
    except ValueError as exc:
        fail(f"FINSENT_RETRAIN_CRON={settings.learning.retrain_cron!r} is not a crontab expression: {exc}")
    probes = _probe_socket(settings)
    shown, _revision = guarded_database(upgrade_database)
    from services.learning.scheduler_metrics import SchedulerMetrics
    from services.learning.upgrade_metrics import UpgradeCollector
    from services.probes import ProbeServer

    poll = settings.runtime.standby_poll_seconds
    metrics = SchedulerMetrics(stall_seconds=max(120.0, 10 * poll))
    metrics.registry.register(UpgradeCollector(settings.upgrade_dir))  # `finsent run`'s background upgrade
    server = ProbeServer(probes, metrics.registry, metrics.health, name="scheduler-probes")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    engine = make_engine(settings.database.database_url)
    lock = LeaderLock(engine, SCHEDULER_LOCK)

    def on_standby() -> None:
        metrics.standby()
        typer.echo(
            f"standby: another scheduler is active on {shown}; polling its lock every {poll:g} s to take over"
        )

    def on_database_error(exc: BaseException) -> None:
        metrics.database_failed()
        log.warning(
            "standby: cannot reach the database to try the lock: %s", " ".join(str(exc).split())[:300]
        )

    try:
        with server:
            typer.echo(f"scheduler probes: metrics {server.url}/metrics, health {server.url}/health")
            while lock.wait(
                stop,
                poll_seconds=poll,
                on_standby=on_standby,
                on_error=on_database_error,
                on_taken=metrics.checked,
            ):
                metrics.became_active()
                if not _lead(settings, shown, lock, stop, metrics):
                    break
                metrics.standby()
                lock.release()
                log.error(
                    "back to standby: another scheduler took the lock while this one's connection was broken"
                )
    finally:
        lock.release()
        engine.dispose()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _lead(
    settings: Settings, shown: str, lock: LeaderLock, stop: threading.Event, metrics: SchedulerMetrics
) -> bool:
    """Run the schedule while this scheduler holds the lock. False when stopped; True when
    the lock was lost to another scheduler (the schedule is shut down first)."""
    from services.cli.common import guarded_database
    from services.learning.scheduler import JOB_ID, start_scheduler

    sched = guarded_database(lambda _url: start_scheduler(settings))[1]
    job = sched.get_job(JOB_ID)
    metrics.next_run(job.next_run_time if job else None)
    typer.echo(
        f"active: retraining scheduler on {shown}: {job.trigger if job else '?'}; next run "
        f"{job.next_run_time.isoformat() if job and job.next_run_time else '?'}; "
        f"{announce_target(settings)}; Ctrl-C stops",
    )
    try:
        while not stop.wait(settings.runtime.standby_poll_seconds):
            job = sched.get_job(JOB_ID)
            metrics.next_run(job.next_run_time if job else None)
            if lock.still_held():
                metrics.checked()
            elif not _retake(lock, metrics):
                return True
        return False
    finally:
        sched.shutdown(wait=True)  # a run in flight finishes (its row is never left `running`)


def announce_target(settings: Settings) -> str:
    """Where a promotion is announced (services.learning.events.announce_champion)."""
    bootstrap = settings.kafka.kafka_bootstrap
    if bootstrap is None:
        return "no broker set: workers find promotions by polling the registry"
    return f"promotions announced on {settings.kafka.topic_model_events} at {bootstrap}"


def _announced(settings: Settings, announced: bool) -> str:
    if announced:
        return f"announced on {settings.kafka.topic_model_events} ({settings.kafka.kafka_bootstrap})"
    if settings.kafka.kafka_bootstrap is None:
        return "not announced (no broker set): workers find it by polling the registry"
    return "not announced (the broker did not answer, see the log): workers find it by polling the registry"


def _retake(lock: LeaderLock, metrics: SchedulerMetrics) -> bool:
    """The lock connection broke: take the lock again if it is free (or the database is
    still away: keep the schedule, the retraining's own lock still prevents two runs)."""
    try:
        held = lock.try_acquire()
    except Exception as exc:
        metrics.database_failed()
        log.warning("cannot check the scheduler lock: %s", " ".join(str(exc).split())[:300])
        return True
    metrics.checked()
    return held


def _probe_socket(settings: Settings) -> socket.socket:
    """Bound now, so that a taken port fails in one line before anything else starts."""
    from services.probes import bind_socket

    host, port = settings.learning.scheduler_metrics_host, settings.learning.scheduler_metrics_port
    try:
        return bind_socket(host, port)
    except OSError as exc:
        fail(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set "
            "FINSENT_SCHEDULER_METRICS_PORT to a free port (0 picks one) or "
            "FINSENT_SCHEDULER_METRICS_HOST to an address of this machine"
        )
