"""Continuous learning: analyst labels, holdouts, the promotion gate, the model registry and
model events (docs/learning.md).

Importing this package never imports torch: the CLI's `labels` and `models list` commands
and the dashboard use it without the model stack; the functions that need a model import
bert_core's heavy parts when they are called.
"""

from services.learning.events import (
    ModelEvent,
    ModelEventError,
    announce_champion,
    publish_model_event,
)
from services.learning.gate import GateDecision, GatePolicy, HoldoutReport, TaskMetrics, decide
from services.learning.holdout import (
    FrozenHoldout,
    HoldoutError,
    evaluate_model,
    evaluate_on_holdouts,
    exclude_holdout,
    frozen_holdouts,
)
from services.learning.label_store import (
    Disagreement,
    LabelCounts,
    LabelledText,
    LabelStats,
    StoredLabel,
    count_labels_after,
    disagreements,
    label_stats,
    label_watermark,
    list_labels,
    recent_holdout,
    record_labels,
    to_labelled_data,
    training_labels,
)
from services.learning.labels import NewLabel, RowError, parse_label_rows, split_for, text_hash
from services.learning.registry import (
    RegistryError,
    champion,
    get_version,
    list_versions,
    previous_champion,
    promote,
    register_model,
    reject,
    rollback,
)

__all__ = [
    "Disagreement",
    "FrozenHoldout",
    "GateDecision",
    "GatePolicy",
    "HoldoutError",
    "HoldoutReport",
    "LabelCounts",
    "LabelStats",
    "LabelledText",
    "ModelEvent",
    "ModelEventError",
    "NewLabel",
    "RegistryError",
    "RowError",
    "StoredLabel",
    "TaskMetrics",
    "announce_champion",
    "champion",
    "count_labels_after",
    "decide",
    "disagreements",
    "evaluate_model",
    "evaluate_on_holdouts",
    "exclude_holdout",
    "frozen_holdouts",
    "get_version",
    "label_stats",
    "label_watermark",
    "list_labels",
    "list_versions",
    "parse_label_rows",
    "previous_champion",
    "promote",
    "publish_model_event",
    "recent_holdout",
    "record_labels",
    "register_model",
    "reject",
    "rollback",
    "split_for",
    "text_hash",
    "to_labelled_data",
    "training_labels",
]
