"""Stories: near-duplicate items grouped into stories, with each item's novelty

A wire story re-published by many outlets was counted once per copy by the alerter and
listed once per copy by the dashboard. `story_members` records the story of each item
stored with clustering on; `story_bands` the LSH band keys its candidates are looked up
by. Items stored before this revision have no row and count as stories of their own.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "story_members",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("story_id", sa.String(128), nullable=False),
        sa.Column("story_published_at", TIMESTAMP, nullable=False),
        sa.Column("published_at", TIMESTAMP, nullable=False),
        sa.Column("novelty", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["news_items.event_id"],
            name=op.f("fk_story_members_event_id_news_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_story_members")),
    )
    op.create_index("ix_story_members_story_id", "story_members", ["story_id"])
    op.create_index("ix_story_members_published_at", "story_members", ["published_at"])
    op.create_table(
        "story_bands",
        sa.Column("band_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("published_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("band_key", "published_at", "event_id", name=op.f("pk_story_bands")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("story_bands")
    op.drop_table("story_members")
