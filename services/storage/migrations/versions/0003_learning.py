"""labels, model_versions, retrain_runs, gate_decisions, apscheduler_jobs; analyst columns on alerts;
full-text index on news headlines (PostgreSQL)

Written by hand to match services/storage/learning_models.py and alert_models.py (tests
compare the two).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
VERSION = sa.String(64)
# An expression index the ORM does not model (the schema comparison ignores it): the news
# browser's full-text search. SQLite falls back to LIKE.
HEADLINE_FTS_INDEX = "ix_news_items_headline_fts"


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(128), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_hash", sa.String(64), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("labeller", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("text_hash", "task", "labeller", name=op.f("uq_labels_text_hash_task_labeller")),
    )
    op.create_index("ix_labels_task_id", "labels", ["task", "id"])
    op.create_index("ix_labels_event_id", "labels", ["event_id"])

    op.create_table(
        "model_versions",
        sa.Column("version", VERSION, nullable=False),
        sa.Column("parent", VERSION, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("data_hash", sa.String(64), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_changed_at", TIMESTAMP, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_model_versions")),
    )
    op.create_index("ix_model_versions_status", "model_versions", ["status"])

    op.create_table(
        "retrain_runs",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("champion_version", VERSION, nullable=True),
        sa.Column("challenger_version", VERSION, nullable=True),
        sa.Column("new_labels", sa.Integer(), nullable=False),
        sa.Column("label_watermark", BIG_ID, nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrain_runs")),
    )

    op.create_table(
        "gate_decisions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", BIG_ID, nullable=True),
        sa.Column("challenger_version", VERSION, nullable=False),
        sa.Column("champion_version", VERSION, nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("comparison", sa.JSON(), nullable=False),
        sa.Column("decided_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["retrain_runs.id"],
            name=op.f("fk_gate_decisions_run_id_retrain_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_decisions")),
    )

    # APScheduler's SQLAlchemyJobStore table, in its own layout (it only creates it if missing),
    # so that the scheduler never issues DDL of its own on the project database.
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), nullable=False),
        sa.Column("next_run_time", sa.Float(25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apscheduler_jobs")),
    )
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"])

    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("acknowledged_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("acknowledged_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("closed_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("muted_until", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("muted_by", sa.String(200), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX {HEADLINE_FTS_INDEX} ON news_items USING gin (to_tsvector('english', headline))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {HEADLINE_FTS_INDEX}")
    with op.batch_alter_table("alerts") as batch:
        for column in (
            "muted_by",
            "muted_until",
            "closed_at",
            "closed_by",
            "acknowledged_at",
            "acknowledged_by",
        ):
            batch.drop_column(column)
    op.drop_index("ix_apscheduler_jobs_next_run_time", table_name="apscheduler_jobs")
    op.drop_table("apscheduler_jobs")
    op.drop_table("gate_decisions")
    op.drop_table("retrain_runs")
    op.drop_index("ix_model_versions_status", table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_index("ix_labels_event_id", table_name="labels")
    op.drop_index("ix_labels_task_id", table_name="labels")
    op.drop_table("labels")
