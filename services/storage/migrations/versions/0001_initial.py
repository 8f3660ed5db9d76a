"""news_items, news_tickers, predictions

Written by hand to match services/storage/models.py (tests compare the two).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "news_items",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("headline", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("source", sa.String(200), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("published_at", TIMESTAMP, nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("tickers", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=True),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_news_items")),
    )
    op.create_index(op.f("ix_news_items_published_at"), "news_items", ["published_at"])

    op.create_table(
        "news_tickers",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("ticker", sa.String(20), nullable=False),
        sa.Column("published_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["news_items.event_id"],
            name=op.f("fk_news_tickers_event_id_news_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "ticker", name=op.f("pk_news_tickers")),
    )
    op.create_index(op.f("ix_news_tickers_ticker_published_at"), "news_tickers", ["ticker", "published_at"])

    op.create_table(
        "predictions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("topic_score", sa.Float(), nullable=False),
        sa.Column("sentiment", sa.String(16), nullable=False),
        sa.Column("p_bearish", sa.Float(), nullable=False),
        sa.Column("p_neutral", sa.Float(), nullable=False),
        sa.Column("p_bullish", sa.Float(), nullable=False),
        sa.Column("sentiment_score", sa.Float(), nullable=False),
        sa.Column("published_at", TIMESTAMP, nullable=False),
        sa.Column("scored_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["news_items.event_id"],
            name=op.f("fk_predictions_event_id_news_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
        sa.UniqueConstraint("event_id", "model_version", name=op.f("uq_predictions_event_id_model_version")),
    )
    op.create_index(op.f("ix_predictions_published_at"), "predictions", ["published_at"])
    op.create_index(op.f("ix_predictions_topic_published_at"), "predictions", ["topic", "published_at"])
    op.create_index(
        op.f("ix_predictions_sentiment_published_at"), "predictions", ["sentiment", "published_at"]
    )


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("news_tickers")
    op.drop_table("news_items")
