"""Batched forward passes shared by evaluation, training-time validation and the Predictor."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch

from bert_core.batching import collate, sorted_batches
from bert_core.model import MultiTaskClassifier


def predict_proba(
    model: MultiTaskClassifier,
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    *,
    batch_size: int = 64,
    tasks: Sequence[str] | None = None,
    bf16: bool = False,
) -> dict[str, np.ndarray]:
    """Class probabilities per task, in input order; batches sorted by length."""
    wanted = list(tasks) if tasks is not None else list(model.heads.keys())
    out = {t: np.zeros((len(token_ids), len(model.label_names[t])), dtype=np.float32) for t in wanted}
    if not token_ids:
        return out
    was_training = model.training
    model.eval()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        with torch.inference_mode(), autocast:
            for idx in sorted_batches([len(t) for t in token_ids], batch_size):
                batch = collate(token_ids, idx, pad_id)
                logits = model(batch.input_ids, batch.attention_mask, tasks=wanted)
                for task, value in logits.items():
                    out[task][idx] = torch.softmax(value.float(), dim=-1).numpy()
    finally:
        model.train(was_training)
    return out
