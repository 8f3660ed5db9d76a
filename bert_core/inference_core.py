"""Batched forward passes shared by evaluation, training-time validation and the Predictor."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from concurrent.futures import Executor, wait

import numpy as np
import torch

from bert_core import packed
from bert_core.batching import collate, sorted_batches, split_by_tokens, token_budget_batches
from bert_core.model import MultiTaskClassifier

# Real tokens per unpadded forward pass: large enough for efficient matrix products, small
# enough to stay in cache (benchmarks/inference_throughput.py --tokens-per-pass compares).
TOKENS_PER_PASS = 2048


def predict_proba(
    model: MultiTaskClassifier,
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    *,
    batch_size: int = 64,
    tasks: Sequence[str] | None = None,
    bf16: bool = False,
    unpadded: bool | None = None,
    tokens_per_pass: int = TOKENS_PER_PASS,
    executor: Executor | None = None,
    min_passes: int = 1,
) -> dict[str, np.ndarray]:
    """Class probabilities per task, in input order.

    `unpadded` (default: wherever `bert_core.packed` supports the encoder) packs each pass's
    real tokens, up to `tokens_per_pass`; otherwise `batch_size` texts per pass are padded
    to the longest among them, in length order. With an `executor`, the passes run on its
    threads (inference mode and autocast are entered in each), and a call is cut into a
    multiple of `min_passes` passes of equal size, so that every thread has the same work.
    """
    wanted = list(tasks) if tasks is not None else list(model.heads.keys())
    out = {t: np.zeros((len(token_ids), len(model.label_names[t])), dtype=np.float32) for t in wanted}
    if not token_ids:
        return out
    if unpadded is None:
        unpadded = packed.supports(model.encoder)
    elif unpadded and not packed.supports(model.encoder):
        raise ValueError(
            f"unpadded inference supports BERT encoders only, not {type(model.encoder).__name__}"
        )
    lengths = [len(t) for t in token_ids]
    if unpadded:
        passes = token_budget_batches(lengths, tokens_per_pass)
    else:
        passes = sorted_batches(lengths, batch_size)
    if min_passes > 1:
        # A multiple of the thread count, of equal size: passes of 2048 and 60 tokens, or three
        # passes on two threads, would leave a thread idle for most of the call.
        parts = math.ceil(len(passes) / min_passes) * min_passes
        if unpadded:
            passes = split_by_tokens(lengths, parts)
        else:  # equal text counts keep every padded pass within batch_size
            passes = sorted_batches(lengths, math.ceil(len(lengths) / parts))

    def run(idx: list[int]) -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            if unpadded:
                logits = model.forward_packed(packed.pack(token_ids, idx), tasks=wanted)
            else:
                batch = collate(token_ids, idx, pad_id)
                logits = model(batch.input_ids, batch.attention_mask, tasks=wanted)
        _store(out, idx, logits)  # passes write disjoint rows

    was_training = model.training
    model.eval()
    try:
        if executor is None or len(passes) == 1:
            for idx in passes:
                run(idx)
        else:
            futures = [executor.submit(run, idx) for idx in passes]
            wait(futures)  # none left running into the next call, even when one failed
            for future in futures:
                future.result()
    finally:
        model.train(was_training)
    return out


def _store(out: dict[str, np.ndarray], idx: list[int], logits: dict[str, torch.Tensor]) -> None:
    for task, value in logits.items():
        out[task][idx] = torch.softmax(value.float(), dim=-1).numpy()
