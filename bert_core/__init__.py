"""bert_core: the finsent model library (no Kafka, no database, no UI).

Public API: load a pretrained encoder, build/fine-tune/evaluate the multi-task
topic + sentiment classifier, MLM domain pre-training, fast inference, and
versioned, hash-verified model directories.
"""

from bert_core.artifacts import (
    LoadedModel,
    Manifest,
    ModelConfig,
    load_model_dir,
    save_model_dir,
    verify_model_dir,
)
from bert_core.data import LabelledData, read_labelled, read_table, read_texts, stratified_split
from bert_core.encoder import load_encoder, packaged_base_model, resolve_base_model
from bert_core.errors import BertCoreError, DataError, ModelConfigError, ModelIntegrityError
from bert_core.evaluation import evaluate_sets, mean_macro_f1
from bert_core.inference import Prediction, Predictor, cpu_has_bf16
from bert_core.labels import DEFAULT_LABELS, SENTIMENT_LABELS, TASKS, TOPIC_LABELS, LabelSet, Task
from bert_core.metrics import classification_report, expected_calibration_error, format_report
from bert_core.mlm import MlmConfig, mask_tokens, pretrain_mlm
from bert_core.model import MultiTaskClassifier, Pooling, pool_hidden
from bert_core.text import normalize_text
from bert_core.training import TrainConfig, TrainResult, class_weights, fine_tune

__all__ = [
    "DEFAULT_LABELS",
    "SENTIMENT_LABELS",
    "TASKS",
    "TOPIC_LABELS",
    "BertCoreError",
    "DataError",
    "LabelSet",
    "LabelledData",
    "LoadedModel",
    "Manifest",
    "MlmConfig",
    "ModelConfig",
    "ModelConfigError",
    "ModelIntegrityError",
    "MultiTaskClassifier",
    "Pooling",
    "Prediction",
    "Predictor",
    "Task",
    "TrainConfig",
    "TrainResult",
    "class_weights",
    "classification_report",
    "cpu_has_bf16",
    "evaluate_sets",
    "expected_calibration_error",
    "fine_tune",
    "format_report",
    "load_encoder",
    "load_model_dir",
    "mask_tokens",
    "mean_macro_f1",
    "normalize_text",
    "packaged_base_model",
    "pool_hidden",
    "pretrain_mlm",
    "read_labelled",
    "read_table",
    "read_texts",
    "resolve_base_model",
    "save_model_dir",
    "stratified_split",
    "verify_model_dir",
]
