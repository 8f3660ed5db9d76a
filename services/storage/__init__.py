"""Storage of the pipeline: SQLAlchemy models, engines, idempotent writes, queries, migrations.

The same code runs on PostgreSQL (production) and SQLite (the embedded default).
"""

from services.storage.alert_models import AlerterCheckpointRow, AlertOutboxRow, AlertRow, SentimentBucketRow
from services.storage.dashboard_models import DashboardUserRow
from services.storage.dashboard_users import (
    StoredDashboardUser,
    add_missing_dashboard_users,
    get_dashboard_user,
    list_dashboard_users,
    remove_dashboard_user,
    upsert_dashboard_user,
)
from services.storage.delivery_models import DeliveryAttemptRow, DeliveryRow, SubscriptionRow
from services.storage.engine import (
    NoDatabaseError,
    make_engine,
    normalise_url,
    redact,
    require_database,
    session_factory,
    sqlite_file,
)
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
    "DashboardUserRow",
    "DeliveryAttemptRow",
    "DeliveryRow",
    "SentimentBucketRow",
    "SubscriptionRow",
    "Base",
    "GateDecisionRow",
    "LeaderLock",
    "LabelRow",
    "NoDatabaseError",
    "ModelArtifactChunkRow",
    "ModelVersionRow",
    "RetrainRunRow",
    "ScheduledJobRow",
    "NewsItemRow",
    "NewsTickerRow",
    "PredictionRow",
    "PruneCounts",
    "ScoredItem",
    "StoredDashboardUser",
    "StoredPrediction",
    "UpsertCounts",
    "add_missing_dashboard_users",
    "count_items",
    "count_older",
    "count_predictions",
    "lock_key",
    "current_revision",
    "get_dashboard_user",
    "head_revision",
    "list_dashboard_users",
    "make_engine",
    "normalise_url",
    "predictions_in_range",
    "prune_older",
    "redact",
    "remove_dashboard_user",
    "require_database",
    "retention_cutoff",
    "session_factory",
    "sqlite_file",
    "upgrade_database",
    "upsert_dashboard_user",
    "upsert_scored_batch",
]
