"""Tables of continuous learning: analyst labels, the model registry, retraining runs, gates.

- `labels` holds every analyst (or imported) label, one row per (text, task, labeller):
  relabelling by the same person replaces their label, two people keep two rows, which is
  how the labelling queue finds disagreements. `text` is stored even for labels given on a
  stored story (`event_id`), so training never has to join, and a story that is purged
  later keeps its label. `split` is fixed when the label is first written (a hash of the
  text): a label in the recent holdout is never trained on.
- `model_versions` is the registry: every model ever trained or adopted, with its parent,
  data hash, metrics, the sha256 of its weights and where it lives. Exactly one row is
  `champion` at a time (the workers serve it).
- `model_artifacts` holds each registered version's files (those its manifest lists, and the
  manifest), in chunks, so a worker on a host that shares only Kafka and Postgres with the
  trainer can fetch the champion (services.learning.artifact_store).
- `retrain_runs` records each scheduled or manual retraining, including skipped ones with
  their reason, and the highest label id it saw, so "new labels" means labels after it.
- `gate_decisions` records each promotion decision with its reasons and the metrics it
  compared, for audit.
- `scheduled_jobs` is the retraining schedule's memory across restarts: when its next run
  is due, and the trigger that time came from. Plain columns: the scheduler rebuilds its
  job from the settings, so nothing it reads from the database is ever unpickled.

Keep versions/*.py in step with this file: tests compare the migrated schema to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.storage.models import BIG_ID, EVENT_ID, Base

MODEL_VERSION = String(64)


class LabelRow(Base):
    """One label given by one analyst (or import) to one text for one task."""

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("text_hash", "task", "labeller"),
        Index("ix_labels_task_id", "task", "id"),
        Index("ix_labels_event_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str | None] = mapped_column(EVENT_ID)  # the stored story, if labelled on one
    text: Mapped[str] = mapped_column(Text)  # normalised text the label applies to
    text_hash: Mapped[str] = mapped_column(String(64))  # sha256 of `text`
    task: Mapped[str] = mapped_column(String(16))  # topic | sentiment
    label: Mapped[str] = mapped_column(String(64))  # label name (never an id)
    labeller: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(200))  # e.g. "import:labels.csv", "dashboard"
    split: Mapped[str] = mapped_column(String(16))  # train | recent_holdout
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ModelVersionRow(Base):
    """One model in the registry."""

    __tablename__ = "model_versions"
    __table_args__ = (Index("ix_model_versions_status", "status"),)

    version: Mapped[str] = mapped_column(MODEL_VERSION, primary_key=True)
    parent: Mapped[str | None] = mapped_column(MODEL_VERSION)
    created_at: Mapped[datetime]
    data_hash: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]]
    sha256: Mapped[str] = mapped_column(String(64))  # of the weights file (model.safetensors)
    # of manifest.json, which hashes every other file; None for versions registered before 0005
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # candidate | champion | rejected | retired
    status_changed_at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(Text)


class ModelArtifactChunkRow(Base):
    """One chunk of one file of a registered model version."""

    __tablename__ = "model_artifacts"

    version: Mapped[str] = mapped_column(
        MODEL_VERSION, ForeignKey("model_versions.version", ondelete="CASCADE"), primary_key=True
    )
    file_name: Mapped[str] = mapped_column(String(255), primary_key=True)  # a plain name, no folders
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0, 1, … in file order
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RetrainRunRow(Base):
    """One retraining attempt (scheduled or manual), including the skipped ones."""

    __tablename__ = "retrain_runs"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))  # running | skipped | promoted | rejected | failed
    reason: Mapped[str | None] = mapped_column(Text)
    champion_version: Mapped[str | None] = mapped_column(MODEL_VERSION)
    challenger_version: Mapped[str | None] = mapped_column(MODEL_VERSION)
    new_labels: Mapped[int] = mapped_column(Integer)
    label_watermark: Mapped[int] = mapped_column(BIG_ID)  # highest labels.id this run saw
    details: Mapped[dict[str, Any]]  # timings, example counts, training metrics


class GateDecisionRow(Base):
    """Why a challenger was promoted or rejected."""

    __tablename__ = "gate_decisions"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(BIG_ID, ForeignKey("retrain_runs.id", ondelete="SET NULL"))
    challenger_version: Mapped[str] = mapped_column(MODEL_VERSION)
    champion_version: Mapped[str | None] = mapped_column(MODEL_VERSION)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[str]]
    comparison: Mapped[dict[str, Any]]  # both models' holdout metrics and the thresholds used
    decided_at: Mapped[datetime]


class ScheduledJobRow(Base):
    """When a scheduler job runs next (services.learning.scheduler)."""

    __tablename__ = "scheduled_jobs"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_run_at: Mapped[datetime | None]  # None: the trigger has no further run
    trigger: Mapped[str | None] = mapped_column(Text)  # str() of the trigger; None: not known
