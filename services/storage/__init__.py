"""Storage of the pipeline: SQLAlchemy models, engines, idempotent writes, queries, migrations.

The same code runs on PostgreSQL (production) and SQLite (the embedded default).
"""

from services.storage.alert_models import AlerterCheckpointRow, AlertOutboxRow, AlertRow, SentimentBucketRow
from services.storage.delivery_models import DeliveryAttemptRow, DeliveryRow, SubscriptionRow
from services.storage.engine import make_engine, normalise_url, redact, session_factory
from services.storage.leadership import LeaderLock, lock_key
from services.storage.learning_models import (
    GateDecisionRow,
    LabelRow,
    ModelArtifactChunkRow,
    ModelVersionRow,
    RetrainRunRow,
    ScheduledJobRow,
)
from services.storage.migrate import current_revision, head_revision, upgrade_database
from services.storage.models import Base, NewsItemRow, NewsTickerRow, PredictionRow
from services.storage.repository import (
    ScoredItem,
    StoredPrediction,
    UpsertCounts,
    count_items,
    count_predictions,
    predictions_in_range,
    upsert_scored_batch,
)
from services.storage.retention import PruneCounts, count_older, prune_older, retention_cutoff
from services.storage.story_models import StoryBandRow, StoryMemberRow

__all__ = [
    "StoryBandRow",
    "StoryMemberRow",
    "AlertOutboxRow",
    "AlertRow",
    "AlerterCheckpointRow",
    "DeliveryAttemptRow",
    "DeliveryRow",
    "SentimentBucketRow",
    "SubscriptionRow",
    "Base",
    "GateDecisionRow",
    "LeaderLock",
    "LabelRow",
    "ModelArtifactChunkRow",
    "ModelVersionRow",
    "RetrainRunRow",
    "ScheduledJobRow",
    "NewsItemRow",
    "NewsTickerRow",
    "PredictionRow",
    "PruneCounts",
    "ScoredItem",
    "StoredPrediction",
    "UpsertCounts",
    "count_items",
    "count_older",
    "count_predictions",
    "lock_key",
    "current_revision",
    "head_revision",
    "make_engine",
    "normalise_url",
    "predictions_in_range",
    "prune_older",
    "redact",
    "retention_cutoff",
    "session_factory",
    "upgrade_database",
    "upsert_scored_batch",
]
