"""bert_core: the finsent model library (no Kafka, no database, no UI).

Public API (the names below; callers outside bert_core import them from here): load a
pretrained encoder, build/fine-tune/evaluate the multi-task topic + sentiment classifier
(`train_model` runs a whole recipe; soft-targets files carry a teacher's probabilities to a
student without the teacher: `compute_soft_targets`, `load_soft_targets`), MLM domain
pre-training, fast inference (`Predictor`; how it works, module by module:
`bert_core.inference`), and versioned, hash-verified model directories. Sub-packages with an
API of their own are imported as packages: `bert_core.encoders` (which encoders, and
assembling them into the model store) and `bert_core.inference`.

Imports are lazy (PEP 562): `import bert_core.errors`, a CLI start-up, or a torch-free name
(`Prediction`, `normalize_text`, the labels, `verify_model_dir`, `cpu_features`...) must not pay
for importing torch and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bert_core.lazy import lazy_getattr

if TYPE_CHECKING:
    from bert_core.artifacts import LoadedModel, ModelConfig, load_model_dir, save_model_dir
    from bert_core.batching import tokenize
    from bert_core.config import (
        DEFAULT_OWN_TASK_WEIGHT,
        LORA_BERT_TARGETS,
        ExperimentalOptions,
        LoraOptions,
        MemoryOptions,
        MlmConfig,
        Pooling,
        TrainConfig,
        TrainMethod,
        format_own_task_weight,
        parse_own_task_weight,
    )
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
    from bert_core.evaluation import (
        ModelComparison,
        compare_models,
        evaluate_sets,
        mean_macro_f1,
        task_probabilities,
        training_summary,
    )
    from bert_core.hashing import sha256_file
    from bert_core.inference.cpu import compiler_available, cpu_features, cpu_has_bf16
    from bert_core.inference.passes import TOKENS_PER_PASS, predict_proba
    from bert_core.inference.predictor import PendingPredictions, Precision, Predictor, resolve_precision
    from bert_core.labels import DEFAULT_LABELS, SENTIMENT_LABELS, TASKS, TOPIC_LABELS, LabelSet, Task
    from bert_core.lora import adapter_state, add_lora, merge_lora, save_adapter
    from bert_core.manifest import (
        CONFIG_FILE,
        MANIFEST_FILE,
        METRICS_FILE,
        WEIGHTS_FILE,
        Manifest,
        VerifiedModelDir,
        check_model_dir,
        manifest_sha256,
        verify_model_dir,
    )
    from bert_core.memory import LexicalMemory
    from bert_core.metrics import classification_report, expected_calibration_error, format_report
    from bert_core.mlm import mask_tokens, pretrain_mlm
    from bert_core.model import MultiTaskClassifier, pool_hidden
    from bert_core.out_dir import new_dir_problem
    from bert_core.prediction import Prediction
    from bert_core.recipes import (
        SplitData,
        combined_hash,
        load_task_files,
        save_result,
        split_sets,
        teacher_mismatch,
        train_model,
    )
    from bert_core.seed_data import packaged_seed_data, packaged_soft_targets, soft_targets_choice
    from bert_core.soft_targets import (
        SoftTargets,
        SoftTargetsManifest,
        average_soft_targets,
        chosen_members,
        load_soft_targets,
        row_indices,
        save_soft_targets,
        teacher_targets_from,
    )
    from bert_core.teacher_targets import compute_ensemble_targets, compute_soft_targets, score_texts
    from bert_core.text import normalize_text
    from bert_core.training import TrainResult, build_memories, class_weights, fine_tune

_EXPORTS: dict[str, str] = {
    "BertCoreError": "bert_core.errors",
    "CompileError": "bert_core.errors",
    "DEFAULT_LABELS": "bert_core.labels",
    "DataError": "bert_core.errors",
    "EncoderMissingError": "bert_core.errors",
    "LabelSet": "bert_core.labels",
    "LabelledData": "bert_core.data",
    "LoadedModel": "bert_core.artifacts",
    "CONFIG_FILE": "bert_core.manifest",
    "MANIFEST_FILE": "bert_core.manifest",
    "METRICS_FILE": "bert_core.manifest",
    "Manifest": "bert_core.manifest",
    "MlmConfig": "bert_core.config",
    "ModelConfig": "bert_core.artifacts",
    "ModelConfigError": "bert_core.errors",
    "ModelIntegrityError": "bert_core.errors",
    "ModelComparison": "bert_core.evaluation",
    "MultiTaskClassifier": "bert_core.model",
    "PendingPredictions": "bert_core.inference.predictor",
    "Pooling": "bert_core.config",
    "ExperimentalOptions": "bert_core.config",
    "Precision": "bert_core.inference.predictor",
    "Prediction": "bert_core.prediction",
    "Predictor": "bert_core.inference.predictor",
    "SENTIMENT_LABELS": "bert_core.labels",
    "SplitData": "bert_core.recipes",
    "TASKS": "bert_core.labels",
    "TOKENS_PER_PASS": "bert_core.inference.passes",
    "TOPIC_LABELS": "bert_core.labels",
    "Task": "bert_core.labels",
    "TrainConfig": "bert_core.config",
    "TrainMethod": "bert_core.config",
    "parse_own_task_weight": "bert_core.config",
    "format_own_task_weight": "bert_core.config",
    "LoraOptions": "bert_core.config",
    "MemoryOptions": "bert_core.config",
    "LexicalMemory": "bert_core.memory",
    "LORA_BERT_TARGETS": "bert_core.config",
    "DEFAULT_OWN_TASK_WEIGHT": "bert_core.config",
    "adapter_state": "bert_core.lora",
    "add_lora": "bert_core.lora",
    "merge_lora": "bert_core.lora",
    "save_adapter": "bert_core.lora",
    "TrainResult": "bert_core.training",
    "VerifiedModelDir": "bert_core.manifest",
    "WEIGHTS_FILE": "bert_core.manifest",
    "class_weights": "bert_core.training",
    "check_model_dir": "bert_core.manifest",
    "classification_report": "bert_core.metrics",
    "combined_hash": "bert_core.recipes",
    "compare_models": "bert_core.evaluation",
    "compiler_available": "bert_core.inference.cpu",
    "cpu_features": "bert_core.inference.cpu",
    "cpu_has_bf16": "bert_core.inference.cpu",
    "evaluate_sets": "bert_core.evaluation",
    "expected_calibration_error": "bert_core.metrics",
    "fine_tune": "bert_core.training",
    "build_memories": "bert_core.training",
    "format_report": "bert_core.metrics",
    "load_encoder": "bert_core.encoder",
    "load_model_dir": "bert_core.artifacts",
    "load_task_files": "bert_core.recipes",
    "manifest_sha256": "bert_core.manifest",
    "mask_tokens": "bert_core.mlm",
    "mean_macro_f1": "bert_core.evaluation",
    "normalize_text": "bert_core.text",
    "packaged_base_model": "bert_core.encoder",
    "packaged_seed_data": "bert_core.seed_data",
    "packaged_soft_targets": "bert_core.seed_data",
    "soft_targets_choice": "bert_core.seed_data",
    "SoftTargets": "bert_core.soft_targets",
    "SoftTargetsManifest": "bert_core.soft_targets",
    "load_soft_targets": "bert_core.soft_targets",
    "save_soft_targets": "bert_core.soft_targets",
    "teacher_targets_from": "bert_core.soft_targets",
    "row_indices": "bert_core.soft_targets",
    "compute_soft_targets": "bert_core.teacher_targets",
    "score_texts": "bert_core.teacher_targets",
    "compute_ensemble_targets": "bert_core.teacher_targets",
    "average_soft_targets": "bert_core.soft_targets",
    "chosen_members": "bert_core.soft_targets",
    "pool_hidden": "bert_core.model",
    "predict_proba": "bert_core.inference.passes",
    "pretrain_mlm": "bert_core.mlm",
    "new_dir_problem": "bert_core.out_dir",
    "read_labelled": "bert_core.data",
    "read_table": "bert_core.data",
    "read_texts": "bert_core.data",
    "resolve_base_model": "bert_core.encoder",
    "resolve_precision": "bert_core.inference.predictor",
    "save_model_dir": "bert_core.artifacts",
    "save_result": "bert_core.recipes",
    "sha256_file": "bert_core.hashing",
    "split_sets": "bert_core.recipes",
    "stratified_split": "bert_core.data",
    "teacher_mismatch": "bert_core.recipes",
    "task_probabilities": "bert_core.evaluation",
    "tokenize": "bert_core.batching",
    "train_model": "bert_core.recipes",
    "training_summary": "bert_core.evaluation",
    "verify_model_dir": "bert_core.manifest",
}


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


__all__ = [
    "DEFAULT_LABELS",
    "CONFIG_FILE",
    "MANIFEST_FILE",
    "METRICS_FILE",
    "SENTIMENT_LABELS",
    "TASKS",
    "TOKENS_PER_PASS",
    "TOPIC_LABELS",
    "VerifiedModelDir",
    "WEIGHTS_FILE",
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
    "ModelComparison",
    "ModelConfigError",
    "ModelIntegrityError",
    "MultiTaskClassifier",
    "PendingPredictions",
    "Pooling",
    "Precision",
    "Prediction",
    "Predictor",
    "SplitData",
    "Task",
    "TrainConfig",
    "TrainMethod",
    "parse_own_task_weight",
    "format_own_task_weight",
    "LoraOptions",
    "MemoryOptions",
    "LexicalMemory",
    "LORA_BERT_TARGETS",
    "DEFAULT_OWN_TASK_WEIGHT",
    "adapter_state",
    "add_lora",
    "merge_lora",
    "save_adapter",
    "TrainResult",
    "class_weights",
    "check_model_dir",
    "classification_report",
    "combined_hash",
    "compare_models",
    "compiler_available",
    "cpu_features",
    "cpu_has_bf16",
    "evaluate_sets",
    "expected_calibration_error",
    "fine_tune",
    "build_memories",
    "format_report",
    "load_encoder",
    "load_model_dir",
    "load_task_files",
    "manifest_sha256",
    "mask_tokens",
    "mean_macro_f1",
    "normalize_text",
    "packaged_base_model",
    "packaged_seed_data",
    "packaged_soft_targets",
    "soft_targets_choice",
    "SoftTargets",
    "SoftTargetsManifest",
    "load_soft_targets",
    "save_soft_targets",
    "teacher_targets_from",
    "teacher_mismatch",
    "row_indices",
    "compute_soft_targets",
    "score_texts",
    "compute_ensemble_targets",
    "average_soft_targets",
    "chosen_members",
    "pool_hidden",
    "predict_proba",
    "pretrain_mlm",
    "new_dir_problem",
    "read_labelled",
    "read_table",
    "read_texts",
    "resolve_base_model",
    "resolve_precision",
    "save_model_dir",
    "save_result",
    "sha256_file",
    "split_sets",
    "stratified_split",
    "task_probabilities",
    "tokenize",
    "train_model",
    "training_summary",
    "verify_model_dir",
]
