"""Drill-down by influence: an expression index on predictions (PostgreSQL)

The drill-down lists the stories behind an index most influential first, influence being
|sentiment_score| x the top sentiment probability (dashboards.data.news). Over a long range
that was a sort of every prediction in it: 1.1-1.3 s for a year of 1,000,000 stories
(benchmarks/dashboard_queries.py), an external merge sort on disk. With the index in the
query's exact ORDER BY, PostgreSQL walks it and stops after the LIMIT: 7 ms for the year,
and the planner still takes the published_at index for short ranges.

The expression must stay identical to the query's (GREATEST of the three probabilities in
that order, times abs(sentiment_score), then published_at and id descending) or the planner
cannot use it. SQLite (the small embedded default) has no GREATEST and does not need it.
Built inside the migration's transaction: about a second per million predictions, during
which writes to predictions wait.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INFLUENCE_INDEX = "ix_predictions_influence"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX {INFLUENCE_INDEX} ON predictions "
            "((abs(sentiment_score) * GREATEST(p_bearish, p_neutral, p_bullish)) DESC, "
            "published_at DESC, id DESC)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {INFLUENCE_INDEX}")
