"""Dashboard users in the database, so every dashboard replica sees the same users

Users, roles and bcrypt hashes lived in a TOML file on each dashboard host; several
replicas behind a load balancer then needed the same file on every host, and a change on
one host reached the others only by copying. `finsent dashboard users import-file` moves an
existing file's users here.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.storage.types import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_users",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(100), nullable=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dashboard_users")),
    )


def downgrade() -> None:
    op.drop_table("dashboard_users")
