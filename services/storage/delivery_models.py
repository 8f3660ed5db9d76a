"""Tables of delivery: subscriptions, and the deliveries of outbox rows to them.

- `subscriptions` says who hears about which alerts, and how (services.delivery validates it);
- `deliveries` is one row per (outbox row, subscription) with its idempotency key, made by the
  dispatcher's fan-out after the alerter committed the outbox row (alert_models.py), so a
  redelivered fan-out inserts nothing;
- `delivery_attempts` records every try.

Keep versions/*.py in step with this file: tests compare the migrated schema to it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.storage.alert_models import DEDUPE_KEY
from services.storage.models import BIG_ID, Base


class SubscriptionRow(Base):
    """Who hears about which alerts, and how."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    scopes: Mapped[list[str]]  # subset of market/topic/ticker; empty = all
    keys: Mapped[list[str]]  # "topic:<name>" / "ticker:<SYMBOL>" (services.delivery); empty = all
    min_severity: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))  # webhook | slack | email | log
    target: Mapped[str] = mapped_column(Text)  # URL, e-mail address, or log name
    secret_ref: Mapped[str | None] = mapped_column(Text)  # env:NAME or file:/path, never the secret
    digest_minutes: Mapped[int | None] = mapped_column(Integer)  # None = immediate
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]


class DeliveryRow(Base):
    """One notification for one subscription; `idempotency_key` is sent with it."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("outbox_id", "subscription_id"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("alert_outbox.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(BIG_ID, ForeignKey("subscriptions.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(DEDUPE_KEY, unique=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    digest_key: Mapped[str | None] = mapped_column(DEDUPE_KEY)  # set when sent as part of a digest
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class DeliveryAttemptRow(Base):
    """Every try of a delivery, successful or not."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        BIG_ID, ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)  # HTTP status / SMTP reply code
    error: Mapped[str | None] = mapped_column(Text)
