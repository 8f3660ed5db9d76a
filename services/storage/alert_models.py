"""Tables of alerting: sentiment indices, the alerter's checkpoints, alerts and the outbox.

The write path, and why it is shaped like this:

- `sentiment_buckets` is a time series per (scope, key, bucket), *recomputed* from stored
  predictions whenever a batch touches a bucket (never incremented), so a replayed or
  redelivered batch leaves it unchanged;
- the alerter's detector and lifecycle state live in `alerter_checkpoints`, one row per
  evaluated event-time minute (the newest is current; older ones let a late story re-run
  detection from before its bucket), written in the same transaction as the alerts and
  outbox rows they produced;
- `alerts` holds each alert's current state, upserted by its deterministic `alert_key`;
- `alert_outbox` holds one row per notification (`dedupe_key` unique: a replay inserts
  nothing), in the same transaction as the alert change; publishing to the `alerts` topic
  and fanning out to subscriptions happen after the commit, so a crash loses nothing
  (the subscriptions and deliveries are in delivery_models.py).

Keep versions/*.py in step with this file: tests compare the migrated schema to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.storage.models import BIG_ID, Base

SCOPE = String(16)  # market | topic | ticker
SCOPE_KEY = String(64)  # "*" | topic name | ticker
ALERT_KEY = String(300)
DEDUPE_KEY = String(400)


class SentimentBucketRow(Base):
    """Counts of one scope in one event-time bucket (published_at), for one bucket width."""

    __tablename__ = "sentiment_buckets"
    __table_args__ = (Index("ix_sentiment_buckets_bucket_start", "bucket_start"),)

    scope: Mapped[str] = mapped_column(SCOPE, primary_key=True)
    key: Mapped[str] = mapped_column(SCOPE_KEY, primary_key=True)
    width_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    bearish: Mapped[int] = mapped_column(Integer)
    neutral: Mapped[int] = mapped_column(Integer)
    bullish: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[float] = mapped_column(Float)  # mean sentiment score = score_sum / total
    updated_at: Mapped[datetime]


class AlerterCheckpointRow(Base):
    """Detector + lifecycle state after evaluating every bucket before `evaluated_until`."""

    __tablename__ = "alerter_checkpoints"

    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    evaluated_until: Mapped[datetime] = mapped_column(primary_key=True)
    detector_state: Mapped[dict[str, Any]]
    lifecycle_state: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class AlertRow(Base):
    """One alert's current state (see services.alerting.lifecycle.Alert)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_scope_key_opened_at", "scope", "key", "opened_at"),
        Index("ix_alerts_status", "status"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    alert_key: Mapped[str] = mapped_column(ALERT_KEY, unique=True)
    rule: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(SCOPE)
    key: Mapped[str] = mapped_column(SCOPE_KEY)
    window_start: Mapped[datetime]
    opened_at: Mapped[datetime]  # event time
    last_detected_at: Mapped[datetime]
    severity: Mapped[str] = mapped_column(String(16))
    notified_severity: Mapped[str] = mapped_column(String(16))
    last_notified_at: Mapped[datetime]
    detections: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # open | resolved
    resolved_at: Mapped[datetime | None]
    evidence: Mapped[dict[str, Any]]  # the latest detection (Detection.to_dict())
    event_ids: Mapped[list[str]]  # headlines that drove it (latest detection)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Analyst actions (the dashboard). Kept apart from `status`, which the alerter owns and
    # rewrites from event time: an analyst closing an alert must not fight a replay.
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    acknowledged_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(200))
    closed_at: Mapped[datetime | None]
    muted_until: Mapped[datetime | None]  # no deliveries for this alert before then
    muted_by: Mapped[str | None] = mapped_column(String(200))


class AlertOutboxRow(Base):
    """A notification to publish and deliver, written with the alert change it announces."""

    __tablename__ = "alert_outbox"
    __table_args__ = (Index("ix_alert_outbox_dispatched_at", "dispatched_at"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(DEDUPE_KEY, unique=True)
    alert_key: Mapped[str] = mapped_column(ALERT_KEY, ForeignKey("alerts.alert_key", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # open | escalate | renotify | reopen | resolve | withdrawn
    severity: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(SCOPE)
    key: Mapped[str] = mapped_column(SCOPE_KEY)
    at: Mapped[datetime]  # event time of the transition
    payload: Mapped[dict[str, Any]]  # the message, as published and delivered
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None]  # to the `alerts` Kafka topic
    dispatched_at: Mapped[datetime | None]  # fanned out into `deliveries`
