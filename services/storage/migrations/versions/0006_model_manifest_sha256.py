"""Model registry: pin each version's manifest hash as well as its weights hash

`model_versions.sha256` pins the weights file only. Every other file of a model directory
(tokenizer, configs) is checked against the directory's own manifest, and the manifest
against nothing: whoever could write the directory could change the tokenizer and re-hash
the manifest, and the model loaded. `manifest_sha256` is the sha256 of manifest.json at
registration; promotion, rollback and every worker load check it before trusting the
manifest. Nullable: versions registered before this revision have no pinned manifest and are
checked as before (weights hash and manifest) until registered again in a new directory.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("manifest_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("manifest_sha256")
