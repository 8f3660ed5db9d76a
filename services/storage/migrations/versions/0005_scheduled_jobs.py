"""scheduled_jobs replaces APScheduler's pickled job table

APScheduler's SQLAlchemy job store kept the retraining job pickled in
`apscheduler_jobs.job_state` and unpickled it on every start: with one database role for
every service, any database write became code execution on the scheduler host. The
scheduler now rebuilds its job from the settings in a memory job store and keeps only the
next run time here, in plain columns. The old table is dropped: the next run time is
copied from its plain `next_run_time` column (job_state is never read), so a run missed
while upgrading is still seen as missed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from services.storage.types import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    jobs = op.create_table(
        "scheduled_jobs",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=True),
        sa.Column("trigger", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_jobs")),
    )
    bind = op.get_bind()
    if sa.inspect(bind).has_table("apscheduler_jobs"):
        old = sa.table("apscheduler_jobs", sa.column("id", sa.String), sa.column("next_run_time", sa.Float))
        rows = bind.execute(sa.select(old.c.id, old.c.next_run_time)).all()
        op.bulk_insert(
            jobs,
            [
                {
                    "id": row.id[:100],
                    "next_run_at": (
                        datetime.fromtimestamp(row.next_run_time, UTC)
                        if row.next_run_time is not None
                        else None
                    ),
                    "trigger": None,  # unknown without unpickling: the next start keeps the time
                }
                for row in rows
            ],
        )
        op.drop_index("ix_apscheduler_jobs_next_run_time", table_name="apscheduler_jobs", if_exists=True)
        op.drop_table("apscheduler_jobs")


def downgrade() -> None:
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), nullable=False),
        sa.Column("next_run_time", sa.Float(25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apscheduler_jobs")),
    )
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"])
    op.drop_table("scheduled_jobs")
