"""bert_core: the finsent model library (no Kafka, no database, no UI).

Public API: load a pretrained encoder (which ones, and assembling them into the model store:
`bert_core.encoders`), build/fine-tune/evaluate the multi-task topic + sentiment classifier,
MLM domain pre-training, fast inference, and versioned, hash-verified model directories.

Imports are lazy (PEP 562): `import bert_core.errors` or a CLI start-up must not pay
for importing torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bert_core.artifacts import (
        LoadedModel,
        Manifest,
        ModelConfig,
        load_model_dir,
        save_model_dir,
        verify_model_dir,
    )
    from bert_core.config import ExperimentalOptions, MlmConfig, Pooling, TrainConfig
    from bert_core.data import LabelledData, read_labelled, read_table, read_texts, stratified_split
    from bert_core.encoder import load_encoder, packaged_base_model, resolve_base_model
    from bert_core.errors import (
        BertCoreError,
        CompileError,
        DataError,
        EncoderMissingError,
        ModelConfigError,
        ModelIntegrityError,
    )
    from bert_core.evaluation import evaluate_sets, mean_macro_f1
    from bert_core.inference import PendingPredictions, Predictor, cpu_has_bf16
    from bert_core.labels import DEFAULT_LABELS, SENTIMENT_LABELS, TASKS, TOPIC_LABELS, LabelSet, Task
    from bert_core.metrics import classification_report, expected_calibration_error, format_report
    from bert_core.mlm import mask_tokens, pretrain_mlm
    from bert_core.model import MultiTaskClassifier, pool_hidden
    from bert_core.prediction import Prediction
    from bert_core.seed_data import packaged_seed_data
    from bert_core.text import normalize_text
    from bert_core.training import TrainResult, class_weights, fine_tune

_EXPORTS: dict[str, str] = {
    "BertCoreError": "bert_core.errors",
    "CompileError": "bert_core.errors",
    "DEFAULT_LABELS": "bert_core.labels",
    "DataError": "bert_core.errors",
    "EncoderMissingError": "bert_core.errors",
    "LabelSet": "bert_core.labels",
    "LabelledData": "bert_core.data",
    "LoadedModel": "bert_core.artifacts",
    "Manifest": "bert_core.artifacts",
    "MlmConfig": "bert_core.config",
    "ModelConfig": "bert_core.artifacts",
    "ModelConfigError": "bert_core.errors",
    "ModelIntegrityError": "bert_core.errors",
    "MultiTaskClassifier": "bert_core.model",
    "Pooling": "bert_core.config",
    "ExperimentalOptions": "bert_core.config",
    "PendingPredictions": "bert_core.inference",
    "Prediction": "bert_core.prediction",
    "Predictor": "bert_core.inference",
    "SENTIMENT_LABELS": "bert_core.labels",
    "TASKS": "bert_core.labels",
    "TOPIC_LABELS": "bert_core.labels",
    "Task": "bert_core.labels",
    "TrainConfig": "bert_core.config",
    "TrainResult": "bert_core.training",
    "class_weights": "bert_core.training",
    "classification_report": "bert_core.metrics",
    "cpu_has_bf16": "bert_core.inference",
    "evaluate_sets": "bert_core.evaluation",
    "expected_calibration_error": "bert_core.metrics",
    "fine_tune": "bert_core.training",
    "format_report": "bert_core.metrics",
    "load_encoder": "bert_core.encoder",
    "load_model_dir": "bert_core.artifacts",
    "mask_tokens": "bert_core.mlm",
    "mean_macro_f1": "bert_core.evaluation",
    "normalize_text": "bert_core.text",
    "packaged_base_model": "bert_core.encoder",
    "packaged_seed_data": "bert_core.seed_data",
    "pool_hidden": "bert_core.model",
    "pretrain_mlm": "bert_core.mlm",
    "read_labelled": "bert_core.data",
    "read_table": "bert_core.data",
    "read_texts": "bert_core.data",
    "resolve_base_model": "bert_core.encoder",
    "save_model_dir": "bert_core.artifacts",
    "stratified_split": "bert_core.data",
    "verify_model_dir": "bert_core.artifacts",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bert_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_LABELS",
    "SENTIMENT_LABELS",
    "TASKS",
    "TOPIC_LABELS",
    "BertCoreError",
    "CompileError",
    "DataError",
    "EncoderMissingError",
    "ExperimentalOptions",
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
    "PendingPredictions",
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
    "packaged_seed_data",
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
