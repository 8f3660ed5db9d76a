"""`finsent scheduler`: APScheduler running the retraining on a cron or interval schedule.

The job lives in APScheduler's SQLAlchemy job store on the project database, so a restarted
scheduler knows when the next run is due. `coalesce=True` turns any number of runs missed
while it was down into one run, `max_instances=1` keeps a slow run from overlapping the next
within one process, the misfire grace time says how late a missed run may still start, and
across processes the retraining's own database lock (services.learning.retrain) makes sure
two scheduler replicas never train at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)

JOB_ID = "finsent-retrain"
JOB_FUNC = "services.learning.scheduler:scheduled_retrain"  # by reference: the job store keeps text


def scheduled_retrain() -> None:
    """The job: one retraining run with the current settings. Never raises into APScheduler
    (a failure is recorded in `retrain_runs` and logged)."""
    from services.learning.retrain import run_retraining
    from services.storage import make_engine

    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        outcome = run_retraining(settings, engine, trigger="schedule")
        log.info(
            "scheduled retraining: %s (%s)", outcome.status, outcome.reason, extra={"run_id": outcome.run_id}
        )
    finally:
        engine.dispose()


def make_trigger(settings: Settings) -> Any:
    """Cron when FINSENT_RETRAIN_CRON is set (a bad expression raises ValueError with APScheduler's
    reason), else the interval."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if settings.retrain_cron:
        return CronTrigger.from_crontab(settings.retrain_cron, timezone="UTC")
    return IntervalTrigger(seconds=settings.retrain_interval_minutes * 60, timezone="UTC")


def start_scheduler(settings: Settings) -> BackgroundScheduler:
    """A running background scheduler with the retraining job in the database job store.

    A job already in the store keeps its next run time, so runs missed while no scheduler ran
    are seen as missed (and coalesced into one); a changed schedule is applied. It starts
    paused so that the job is settled before anything fires.
    """
    from apscheduler.jobstores.base import ConflictingIdError
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from services.storage import make_engine

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=make_engine(settings.database_url))},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.retrain_misfire_grace_seconds,
        },
        timezone="UTC",
    )
    wanted = make_trigger(settings)
    scheduler.start(paused=True)
    job = scheduler.get_job(JOB_ID)
    if job is None:
        try:
            scheduler.add_job(JOB_FUNC, trigger=wanted, id=JOB_ID, name="retrain on new labels")
        except ConflictingIdError:  # another replica, starting at the same moment, added it first
            job = scheduler.get_job(JOB_ID)
    if job is not None and str(job.trigger) != str(wanted):
        log.info("retraining schedule changed: %s -> %s", job.trigger, wanted)
        job.reschedule(trigger=wanted)
    scheduler.resume()
    return scheduler
