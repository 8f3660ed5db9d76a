"""Batched forward passes shared by evaluation, training-time validation and the Predictor:
how a call is cut into passes (unpadded token budgets or padded length-sorted batches, split
evenly across parallel pass threads), and the passes run."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, Future, wait

import numpy as np
import torch

from bert_core.batching import collate, sorted_batches, split_by_tokens, token_budget_batches
from bert_core.inference.unpadded import pack, supports
from bert_core.model import MultiTaskClassifier

# Real tokens per unpadded forward pass: large enough for efficient matrix products, small
# enough to stay in cache (benchmarks/inference_throughput.py --tokens-per-pass compares).
TOKENS_PER_PASS = 2048

# A call is cut into parallel passes only if each gets at least this many real tokens (about
# six headlines). Small passes are bound by streaming the weights from memory and by the
# Python work of each operation, not by arithmetic, and two such passes side by side slow
# each other down. On a 2-core AVX2 EPYC, calls of two headlines cut into two passes ran no
# faster than one pass on one thread and used 1.6x its CPU (int8: 34.5 vs 21.4 ms per
# headline); on an AMX Xeon (bf16), calls of 8 headlines (160 tokens) took as long
# either way (1.20 vs 1.21 ms per headline) and split used 1.52x the CPU, while from 16
# headlines on the split was 25-40 % faster for 10-27 % more CPU. In a live stream, where
# batches are small and the broker, the database and the worker's other threads share the
# cores, that CPU is what the tail latency pays for. On a Zen 4 EPYC one pass saved 16-25 %
# of the CPU of calls of 2-4 headlines but took 22-26 % longer (docs/performance.md#call-splitting).
MIN_SPLIT_PASS_TOKENS = 128


class PendingProba:
    """The passes of one `start_predict_proba` call, possibly still running on an executor.

    `done` resolves when every pass has ended (also when one failed), so an event loop can
    wait for it (`asyncio.wrap_future`) without holding a thread; `result()` then returns the
    probabilities or raises the first pass's error.
    """

    def __init__(self, out: dict[str, np.ndarray], futures: Sequence[Future[None]]) -> None:
        self._out = out
        self._futures = list(futures)
        self.done: Future[None] = Future()
        remaining = [len(self._futures)]
        lock = threading.Lock()

        def one_ended(_: Future[None]) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last and not self.done.done():  # an awaiting event loop may have cancelled it
                self.done.set_result(None)

        if not self._futures:
            self.done.set_result(None)
        for future in self._futures:
            future.add_done_callback(one_ended)

    def result(self) -> dict[str, np.ndarray]:
        wait(self._futures)  # none left running into the caller's next step, even when one failed
        for future in self._futures:
            future.result()
        return self._out


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
    min_split_tokens: int = MIN_SPLIT_PASS_TOKENS,
) -> dict[str, np.ndarray]:
    """Class probabilities per task, in input order.

    `unpadded` (default: wherever `bert_core.inference.unpadded` supports the encoder) packs each pass's
    real tokens, up to `tokens_per_pass`; otherwise `batch_size` texts per pass are padded
    to the longest among them, in length order. With an `executor`, the passes run on its
    threads (inference mode and autocast are entered in each), and a call is cut into a
    multiple of `min_passes` passes of equal size, so that every thread has the same work —
    unpadded, only as far as each pass keeps `min_split_tokens` real tokens.
    """
    was_training = model.training
    model.eval()
    try:
        return start_predict_proba(
            model,
            token_ids,
            pad_id,
            batch_size=batch_size,
            tasks=tasks,
            bf16=bf16,
            unpadded=unpadded,
            tokens_per_pass=tokens_per_pass,
            executor=executor,
            min_passes=min_passes,
            min_split_tokens=min_split_tokens,
        ).result()
    finally:
        model.train(was_training)


def start_predict_proba(
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
    min_split_tokens: int = MIN_SPLIT_PASS_TOKENS,
) -> PendingProba:
    """`predict_proba` without waiting: the passes are queued on `executor` and the caller
    is free to prepare the next call while they run (a stream's next slice, tokenised while
    this one is scored, keeps the pass threads busy). A single pass is queued too: a stream's
    next small batch then runs on the other thread beside it. Without an executor the passes
    run here before it returns. `model` must already be in eval mode: it cannot be switched
    back while passes may still be running."""
    if model.training:
        raise ValueError("start_predict_proba needs a model in eval mode (model.eval())")
    wanted = list(tasks) if tasks is not None else list(model.heads.keys())
    out = {t: np.zeros((len(token_ids), len(model.label_names[t])), dtype=np.float32) for t in wanted}
    if not token_ids:
        return PendingProba(out, [])
    if unpadded is None:
        unpadded = supports(model.encoder)
    elif unpadded and not supports(model.encoder):
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
            affordable = sum(lengths) // min_split_tokens if min_split_tokens > 0 else parts
            passes = split_by_tokens(lengths, max(len(passes), min(parts, affordable), 1))
        else:  # equal text counts keep every padded pass within batch_size
            passes = sorted_batches(lengths, math.ceil(len(lengths) / parts))

    def run(idx: list[int]) -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            if unpadded:
                logits = model.forward_packed(pack(token_ids, idx), tasks=wanted)
            else:
                batch = collate(token_ids, idx, pad_id)
                logits = model(batch.input_ids, batch.attention_mask, tasks=wanted)
        _store(out, idx, logits)  # passes write disjoint rows

    if executor is None:
        for idx in passes:
            run(idx)
        return PendingProba(out, [])
    return PendingProba(out, [executor.submit(run, idx) for idx in passes])


def _store(out: dict[str, np.ndarray], idx: list[int], logits: dict[str, torch.Tensor]) -> None:
    for task, value in logits.items():
        out[task][idx] = torch.softmax(value.float(), dim=-1).numpy()
