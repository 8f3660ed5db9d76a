"""Evaluating a classifier on labelled sets, per task, and comparing models on the same sets.

`task_probabilities` runs the model; the rest are plain functions of probabilities and
recorded metadata, so the comparison (each model, and the mean of their probabilities) is
tested without a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from bert_core.batching import tokenize
from bert_core.data import LabelledData
from bert_core.inference.passes import predict_proba
from bert_core.memory import LexicalMemory
from bert_core.metrics import classification_report
from bert_core.model import MultiTaskClassifier


def evaluate_sets(
    model: MultiTaskClassifier,
    tokenizer: PreTrainedTokenizerBase,
    sets: Mapping[str, LabelledData],
    *,
    max_length: int,
    batch_size: int = 64,
    bf16: bool = False,
    unpadded: bool | None = None,
    memories: Mapping[str, LexicalMemory] | None = None,
) -> dict[str, dict[str, Any]]:
    """Report per task: {"sentiment": {...}, "topic": {...}} for the sets given."""
    probs = task_probabilities(
        model,
        tokenizer,
        sets,
        max_length=max_length,
        batch_size=batch_size,
        bf16=bf16,
        unpadded=unpadded,
        memories=memories,
    )
    return reports_from_probabilities(sets, probs, model.label_names)


def task_probabilities(
    model: MultiTaskClassifier,
    tokenizer: PreTrainedTokenizerBase,
    sets: Mapping[str, LabelledData],
    *,
    max_length: int,
    batch_size: int = 64,
    bf16: bool = False,
    unpadded: bool | None = None,
    memories: Mapping[str, LexicalMemory] | None = None,
) -> dict[str, np.ndarray]:
    """Class probabilities per task, one row per text of that task's set; a task with a
    memory (a loaded model's `memories`) gets its head's mixed with it, as served."""
    pad_id = int(tokenizer.pad_token_id or 0)
    probs: dict[str, np.ndarray] = {}
    for task, data in sets.items():
        tokens = tokenize(tokenizer, data.texts, max_length)
        probs[task] = predict_proba(
            model, tokens, pad_id, batch_size=batch_size, tasks=[task], bf16=bf16, unpadded=unpadded
        )[task]
        if memories and task in memories:
            probs[task] = memories[task].mix(probs[task], data.texts)
    return probs


def reports_from_probabilities(
    sets: Mapping[str, LabelledData],
    probs: Mapping[str, np.ndarray],
    label_names: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, Any]]:
    """`classification_report` per task of the argmax of `probs` against the sets' labels."""
    return {
        task: classification_report(
            data.labels, probs[task].argmax(axis=1).tolist(), label_names[task], probs[task]
        )
        for task, data in sets.items()
    }


@dataclass(frozen=True)
class ModelComparison:
    """Each model's reports on the same sets, and the report of the mean of their probabilities
    (an ensemble: the upper bound of distilling it into one model)."""

    members: dict[str, dict[str, dict[str, Any]]]
    ensemble: dict[str, dict[str, Any]]


def compare_models(
    sets: Mapping[str, LabelledData],
    probs_by_model: Mapping[str, Mapping[str, np.ndarray]],
    label_names: Mapping[str, Sequence[str]],
) -> ModelComparison:
    """Reports of every model (by name) and of the mean of their probabilities, per task.

    The models must share label names and have scored the same texts in the same order; a
    mismatch is a `ValueError`, since averaging misaligned probabilities would be meaningless."""
    if not probs_by_model:
        raise ValueError("no models to compare")
    for task, data in sets.items():
        expected = (len(data.texts), len(label_names[task]))
        for name, probs in probs_by_model.items():
            shape = np.shape(probs[task]) if task in probs else None
            if shape != expected:
                raise ValueError(f"{name}: {task} probabilities of shape {shape}, expected {expected}")
    members = {
        name: reports_from_probabilities(sets, probs, label_names) for name, probs in probs_by_model.items()
    }
    ensemble_probs = {
        task: np.mean([probs[task] for probs in probs_by_model.values()], axis=0) for task in sets
    }
    return ModelComparison(members, reports_from_probabilities(sets, ensemble_probs, label_names))


def training_summary(training: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What a model's recorded training cost: epochs run, minutes, MLM pre-training if any
    (from its config's `training` block and its `metrics.json`)."""
    history = metrics.get("history") or []
    summary: dict[str, Any] = {
        "epochs_run": round(float(history[-1]["epoch"]), 2) if history else 0,
        "train_minutes": round(float(training.get("seconds", 0)) / 60, 1),
        "mlm_minutes": None,
    }
    if "mlm" in training:
        summary["mlm_minutes"] = round(float(training["mlm"].get("seconds", 0)) / 60, 1)
    return summary


def mean_macro_f1(reports: Mapping[str, Mapping[str, Any]]) -> float:
    """The early-stopping score: tasks weigh equally, whatever their set sizes."""
    return sum(float(r["macro_f1"]) for r in reports.values()) / max(len(reports), 1)
