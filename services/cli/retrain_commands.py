"""`finsent retrain --now` and `finsent scheduler`: retraining once, or on a schedule.

Both migrate the database at FINSENT_DATABASE_URL first. A run needs a champion in the
registry (`finsent models register DIR --champion`) and at least
FINSENT_RETRAIN_MIN_NEW_LABELS new labels (`finsent labels import FILE`), unless forced.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.common import DatabaseUrlOption
from services.cli.errors import fail
from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from prometheus_client import Gauge

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
    engine = make_engine(settings.database_url)
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
    for key in ("data_seconds", "train_seconds", "evaluate_seconds"):
        if key in outcome.details:
            typer.echo(f"  {key.replace('_', ' ')}: {outcome.details[key]}")
    if outcome.status == "failed":
        raise typer.Exit(1)
    if outcome.status == "rejected":
        raise typer.Exit(EXIT_REJECTED)


def scheduler(
    database_url: DatabaseUrlOption = None,
) -> None:
    """Run the retraining on FINSENT_RETRAIN_CRON (or every FINSENT_RETRAIN_INTERVAL_MINUTES) until stopped.

    Serves Prometheus metrics on FINSENT_SCHEDULER_METRICS_HOST:FINSENT_SCHEDULER_METRICS_PORT.
    """
    from services.cli.common import guarded_database, quiet_alembic

    quiet_alembic()
    settings = get_settings()
    from services.learning.scheduler import JOB_ID, make_trigger, start_scheduler
    from services.storage import upgrade_database

    try:
        make_trigger(settings)
    except ValueError as exc:
        fail(f"FINSENT_RETRAIN_CRON={settings.retrain_cron!r} is not a crontab expression: {exc}")
    shown, _revision = guarded_database(upgrade_database)
    metrics = _serve_metrics(settings)
    sched = guarded_database(lambda _url: start_scheduler(settings))[1]
    job = sched.get_job(JOB_ID)
    typer.echo(
        f"retraining scheduler on {shown}: {job.trigger if job else '?'}; next run "
        f"{job.next_run_time.isoformat() if job and job.next_run_time else '?'}; Ctrl-C stops",
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(5.0):
            job = sched.get_job(JOB_ID)
            if job is not None and job.next_run_time is not None:
                metrics.set(job.next_run_time.timestamp())
    finally:
        sched.shutdown(wait=True)  # a run in flight finishes (its row is never left `running`)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve_metrics(settings: Settings) -> Gauge:
    """`finsent_scheduler_next_run_timestamp_seconds` (and the process collectors)."""
    from prometheus_client import Gauge, start_http_server

    host, port = settings.scheduler_metrics_host, settings.scheduler_metrics_port
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        fail(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
            "set FINSENT_SCHEDULER_METRICS_PORT to a free port (0 picks one)"
        )
    return Gauge(
        "finsent_scheduler_next_run_timestamp_seconds", "When the next retraining is due (unix time)"
    )
