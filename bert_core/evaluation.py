"""Evaluating a classifier on labelled sets, per task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import PreTrainedTokenizerBase

from bert_core.batching import tokenize
from bert_core.data import LabelledData
from bert_core.inference.passes import predict_proba
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
) -> dict[str, dict[str, Any]]:
    """Report per task: {"sentiment": {...}, "topic": {...}} for the sets given."""
    reports: dict[str, dict[str, Any]] = {}
    pad_id = int(tokenizer.pad_token_id or 0)
    for task, data in sets.items():
        tokens = tokenize(tokenizer, data.texts, max_length)
        probs = predict_proba(
            model, tokens, pad_id, batch_size=batch_size, tasks=[task], bf16=bf16, unpadded=unpadded
        )[task]
        reports[task] = classification_report(
            data.labels, probs.argmax(axis=1).tolist(), model.label_names[task], probs
        )
    return reports


def mean_macro_f1(reports: Mapping[str, Mapping[str, Any]]) -> float:
    """The early-stopping score: tasks weigh equally, whatever their set sizes."""
    return sum(float(r["macro_f1"]) for r in reports.values()) / max(len(reports), 1)
