"""`finsent scheduler`: APScheduler running the retraining on a cron or interval schedule.

The job is rebuilt from the settings at every start, in APScheduler's memory job store;
the database keeps only when it is due next (`scheduled_jobs`, plain columns), so a
restarted scheduler knows a run was missed. APScheduler's SQLAlchemy job store is not used:
it pickles each job into the database and unpickles it on start, and every service shares
one database role, so a database write would be code execution on the scheduler host.

`finsent scheduler` runs this only while it holds the scheduler lock (services.storage.
leadership): replicas on standby start the schedule when the active one dies, from the due
time the database keeps, so a run due meanwhile is run (once) by the new one.

`coalesce=True` turns any number of runs missed while it was down into one run,
`max_instances=1` keeps a slow run from overlapping the next within one process, the
misfire grace time says how late a missed run may still start, and across processes the
retraining's own database lock (services.learning.retrain) still makes sure two processes
never train at once (`finsent retrain --now` beside the scheduler, or schedulers started
by `start_scheduler` directly, each fire and the second records a skipped run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.settings import Settings, get_settings

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)

JOB_ID = "finsent-retrain"
# The leader lock of `finsent scheduler` (services.storage.leadership): one active scheduler
# per database, the others on standby.
SCHEDULER_LOCK = "finsent-scheduler"


def scheduled_retrain() -> None:
    """The job: one retraining run with the current settings. Never raises into APScheduler
    (a failure is recorded in `retrain_runs` and logged)."""
    from services.learning.retrain import run_retraining
    from services.storage import make_engine

    settings = get_settings()
    engine = make_engine(settings.database.database_url)
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

    if settings.learning.retrain_cron:
        return CronTrigger.from_crontab(settings.learning.retrain_cron, timezone="UTC")
    return IntervalTrigger(seconds=settings.learning.retrain_interval_minutes * 60, timezone="UTC")


def settle_next_run(engine: Engine, trigger: Any, *, now: datetime) -> datetime | None:
    """When the job is due: the stored time if the schedule is unchanged (a time in the
    past is a missed run), else the trigger's next time from `now`, stored. Replicas
    starting together agree: the first row written wins."""
    from services.storage import ScheduledJobRow

    wanted = str(trigger)
    with Session(engine) as session:
        row = session.get(ScheduledJobRow, JOB_ID)
        if row is None:
            session.add(
                ScheduledJobRow(id=JOB_ID, next_run_at=trigger.get_next_fire_time(None, now), trigger=wanted)
            )
            try:
                session.commit()
            except IntegrityError:  # another replica, starting at the same moment, wrote it first
                session.rollback()
            row = session.scalars(select(ScheduledJobRow).where(ScheduledJobRow.id == JOB_ID)).one()
        elif row.trigger is None:  # copied from the old job table: keep its time, learn the trigger
            row.trigger = wanted
            session.commit()
        elif row.trigger != wanted:
            log.info("retraining schedule changed: %s -> %s", row.trigger, wanted)
            row.trigger, row.next_run_at = wanted, trigger.get_next_fire_time(None, now)
            session.commit()
        return row.next_run_at


def _store_next_run(engine: Engine) -> Callable[[str, datetime | None], None]:
    def store(job_id: str, next_run_at: datetime | None) -> None:
        from services.storage import ScheduledJobRow

        try:
            with Session(engine) as session, session.begin():
                row = session.get(ScheduledJobRow, job_id)
                if row is not None:
                    row.next_run_at = next_run_at
        except Exception:  # the schedule still runs; a restart may then repeat or skip one run
            log.exception("could not store the next run time of %s", job_id)

    return store


def start_scheduler(settings: Settings) -> BackgroundScheduler:
    """A running background scheduler with the retraining job rebuilt from `settings`.

    It starts paused so that the job is settled (its due time read from the database)
    before anything fires.
    """
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from services.storage import make_engine

    engine = make_engine(settings.database.database_url)
    store_next_run = _store_next_run(engine)

    class TimeKeepingJobStore(MemoryJobStore):
        """The memory job store, writing each job's next run time through to `scheduled_jobs`."""

        def update_job(self, job: Any) -> None:
            super().update_job(job)
            store_next_run(job.id, job.next_run_time)

    scheduler = BackgroundScheduler(
        jobstores={"default": TimeKeepingJobStore()},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.learning.retrain_misfire_grace_seconds,
        },
        timezone="UTC",
    )
    trigger = make_trigger(settings)
    next_run = settle_next_run(engine, trigger, now=datetime.now(UTC))
    scheduler.start(paused=True)
    if next_run is not None:
        scheduler.add_job(
            scheduled_retrain,
            trigger=trigger,
            id=JOB_ID,
            name="retrain on new labels",
            next_run_time=next_run,
        )
    scheduler.resume()
    return scheduler
