"""Fast batch inference: the object the workers, the CLI and the benchmarks call."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from bert_core.artifacts import LoadedModel, load_model_dir
from bert_core.batching import tokenize
from bert_core.errors import CompileError, DataError, ModelConfigError
from bert_core.inference.compiled import CompiledPackedEncoder
from bert_core.inference.cpu import compiler_available, compiler_command, cpu_has_amx_bf16, cpu_has_bf16
from bert_core.inference.linear_layers import (
    int8_available,
    prepack_linears,
    prepacked_available,
    quantize_linears,
)
from bert_core.inference.passes import TOKENS_PER_PASS, PendingProba, start_predict_proba
from bert_core.inference.unpadded import add_fused_qkv, supports
from bert_core.manifest import VerifiedModelDir
from bert_core.memory import mix_votes
from bert_core.model import MultiTaskClassifier
from bert_core.prediction import Prediction
from bert_core.text import normalize_text

log = logging.getLogger(__name__)

# torch's thread count when this module was imported: the default of `threads`. Not read
# again later, since a Predictor with parallel passes lowers the process-wide count.
_PROCESS_THREADS = torch.get_num_threads()

Precision = Literal["fp32", "bf16", "int8", "auto"]

# What `Predictor.warm_up` scores and throws away: eight texts of every common headline length
# (4 to 64 words), so that every pass shape a stream makes has run once.
WARM_UP_TEXTS = tuple(" ".join(["markets"] * n) for n in (4, 8, 12, 16, 24, 32, 48, 64) for _ in range(8))


def resolve_precision(precision: Precision) -> Literal["fp32", "bf16", "int8"]:
    """`auto`: the fastest path within half a point of fp32's dev accuracy (docs/performance.md#precision).

    bf16 on CPUs with AMX tiles (2-2.5x int8 there, matching fp32). Elsewhere int8
    (`quantize_int8`, within 0.25 points of fp32 on both tasks): on AVX512-BF16 CPUs without
    AMX it outruns bf16 (Zen 4: 731 vs 607 headlines/s alone, 615 vs 577/s
    in the worker, and less CPU per headline in a live stream's small calls), on AVX2 ones
    it is 1.65x fp32 while emulated bf16 is 7x slower than fp32. bf16 where torch lacks
    oneDNN's quantised linear ops but the CPU has bf16 units, else fp32."""
    if precision == "auto":
        if cpu_has_amx_bf16():
            return "bf16"
        if int8_available():
            return "int8"
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision


class Predictor:
    """Topic + sentiment for a list of texts, using a verified model directory.

    `precision`: fp32 (reference), bf16 (fast on CPUs with AMX/AVX512-BF16), int8 (a scale
    per input row and weight channel, `quantize_int8`), or auto (`resolve_precision`: bf16
    on CPUs with AMX, else int8 where torch has oneDNN's int8 ops, else bf16 or fp32).
    `threads` torch threads in all (default: torch's current count), shared by
    `parallel_passes` passes that run side by side on threads of the Predictor's own. BERT
    encoders run unpadded, `tokens_per_pass` real tokens per forward pass (`unpadded`); other
    encoders in length-sorted padded passes of `batch_size` texts. bf16 weights are laid out
    once for oneDNN with GELU fused into its layer wherever available (`linear_layers`; not
    with `compiled`). `compiled`: the unpadded pass compiled by `torch.compile` (`compiled`),
    at construction (`warm_up`), which then takes 30-60 s; a failure raises CompileError.
    Texts longer than the model's max length are truncated, empty texts are refused with
    DataError. Call `warm_up` before serving.

    Comparison switches, for benchmarks and tests only (private: serving never sets them):
    `_unpadded=False` forces padded passes on a BERT encoder (True: refuse other encoders);
    `_prepacked=False` keeps plain `F.linear` bf16 layers (True: refuse where unavailable).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        precision: Precision = "fp32",
        threads: int | None = None,
        batch_size: int = 64,
        tokens_per_pass: int = TOKENS_PER_PASS,
        parallel_passes: int = 1,
        compiled: bool = False,
        _unpadded: bool | None = None,
        _prepacked: bool | None = None,
    ) -> None:
        self.precision = resolve_precision(precision)
        if self.precision == "int8" and not int8_available():
            raise ModelConfigError(
                "precision int8 needs torch built with oneDNN's quantised linear ops (x86); "
                "use precision auto or fp32"
            )
        if parallel_passes < 1:
            raise ModelConfigError(f"parallel_passes must be at least 1, not {parallel_passes}")
        total_threads = threads or _PROCESS_THREADS
        self.parallel_passes = min(parallel_passes, total_threads)
        if threads or self.parallel_passes > 1:
            torch.set_num_threads(max(1, total_threads // self.parallel_passes))
        # Passes side by side on their own threads, each with its share of torch's threads, beat one
        # pass at a time on all of them (323 vs 259 headlines/s on two cores, and 285 vs 207 when
        # another process takes 30 % of a core; docs/performance.md#parallel-passes): a pass on one
        # thread never waits at a parallel region's barrier for a core that something else is using.
        self._executor = (
            ThreadPoolExecutor(self.parallel_passes, thread_name_prefix="finsent-pass")
            if self.parallel_passes > 1
            else None
        )
        if self.precision == "bf16" and not cpu_has_bf16():
            log.warning(
                "bf16 requested on a CPU without native bf16 units (AVX512-BF16/AMX): it is emulated "
                "and about 7x slower than fp32 here (measured); use precision auto or fp32"
            )
        self.batch_size = batch_size
        self.tokens_per_pass = tokens_per_pass
        supported = supports(loaded.model.encoder)
        if _unpadded and not supported:
            raise ModelConfigError(
                f"{loaded.path}: unpadded inference supports BERT encoders only, "
                f"not {type(loaded.model.encoder).__name__}"
            )
        self.unpadded = supported if _unpadded is None else _unpadded
        if not supported:
            # The fast paths reproduce BERT's forward only (`unpadded.supports`); int8 and bf16
            # weights are generic Linear swaps and still apply.
            log.warning(
                "%s: %s encoder: the unpadded%s pass is BERT-only; serving length-sorted padded "
                "passes of %d texts",
                loaded.path,
                type(loaded.model.encoder).__name__,
                " and compiled" if compiled else "",
                batch_size,
            )
        self.version = loaded.manifest.version
        self.memories = loaded.memories
        self.max_length = loaded.config.max_length
        self.tokenizer = loaded.tokenizer
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        # Compiled, inductor lays out bf16 weights for oneDNN itself (freezing), and cannot
        # trace through the prepacked layers' opaque weights.
        can_prepack = self.precision == "bf16" and prepacked_available() and not compiled
        if _prepacked and not can_prepack:
            raise ModelConfigError(
                "prepacked linear layers need precision bf16 on a CPU with native bf16 units "
                "and torch built with oneDNN, and an uncompiled pass"
            )
        self.prepacked = can_prepack if _prepacked is None else _prepacked
        self.model = _inference_copy(
            loaded.model, self.precision, fuse_qkv=self.unpadded, prepacked=self.prepacked
        )
        # Hold the prepared copy only: the loaded fp32 weights are freed once nothing else refers
        # to them (Predictor.load's never does), so a serving process keeps one model, not two.
        self.loaded = dataclasses.replace(loaded, model=self.model)
        labels = loaded.config.labels
        if "sentiment" not in labels or "topic" not in labels:
            raise DataError(f"{loaded.path}: model lacks a topic or sentiment head")
        self.sentiment_labels = labels["sentiment"]
        self.topic_labels = labels["topic"]
        self._warmed_up = False
        # last: a model refused above should not cost a minute's compilation first
        self._compiled_encoder = self._compiled_pass(str(loaded.path)) if compiled else None
        self.compiled = self._compiled_encoder is not None
        if self.compiled:
            # Serving never compiles, and a compilation that fails should fail where the
            # Predictor is made: a compiled Predictor is warmed up (compiled) here.
            self.warm_up()

    @classmethod
    def load(
        cls,
        path: str | Path | VerifiedModelDir,
        *,
        precision: Precision = "fp32",
        threads: int | None = None,
        batch_size: int = 64,
        tokens_per_pass: int = TOKENS_PER_PASS,
        parallel_passes: int = 1,
        compiled: bool = False,
        _unpadded: bool | None = None,
        _prepacked: bool | None = None,
    ) -> Predictor:
        return cls(
            load_model_dir(path),
            precision=precision,
            threads=threads,
            batch_size=batch_size,
            tokens_per_pass=tokens_per_pass,
            parallel_passes=parallel_passes,
            compiled=compiled,
            _unpadded=_unpadded,
            _prepacked=_prepacked,
        )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return self.submit(texts).result()

    def warm_up(self) -> None:
        """Get ready to serve, before the first real call: compile the encoder pass's graphs
        (compiled Predictors, which the constructor already warms up: serving never compiles)
        and score a throw-away batch of every common length (`WARM_UP_TEXTS`). The first
        batches of a cold process run about 2x slower (kernel selection, allocator growth),
        which would otherwise land on the first real news after a start or a rebalance.
        Once per Predictor; later calls return at once. A failed compilation raises
        CompileError."""
        if self._warmed_up:
            return
        if self._compiled_encoder is not None:
            samples = tokenize(self.tokenizer, list(WARM_UP_TEXTS), self.max_length)
            autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")
            try:
                with autocast:
                    self._compiled_encoder.warm_up(samples)
            except Exception as exc:  # inductor's errors carry pages of context; one line is enough
                raise CompileError(
                    f"{self.loaded.path}: compiling the encoder failed ({_root_cause(exc)}); turn "
                    "compilation off (FINSENT_COMPILE=false)"
                ) from exc
        self.predict(list(WARM_UP_TEXTS))
        self._warmed_up = True

    def _compiled_pass(self, where: str) -> CompiledPackedEncoder | None:
        """Replace the copy's unpadded pass by a compiled one (`bert_core.inference.compiled`),
        to be compiled by `warm_up`; None if the model is served uncompiled. Encoders without
        the unpadded path (not BERT) are, with a warning: compiling is a speed-up, not a
        feature."""
        if not self.unpadded:
            if supports(self.model.encoder):  # a non-BERT encoder was warned about above
                log.warning("%s: only the unpadded pass compiles; serving this model uncompiled", where)
            return None
        if not compiler_available():
            raise CompileError(
                f"compiled inference needs a C++ compiler ({compiler_command()}) and Python's headers "
                "(Python.h); install them, or turn compilation off (FINSENT_COMPILE=false)"
            )
        encoder = CompiledPackedEncoder(self.model.encoder)
        self.model.packed_encode = encoder
        return encoder

    def submit(self, texts: Sequence[str]) -> PendingPredictions:
        """Normalise, tokenise and queue the forward passes of `texts`, without waiting for them.

        With parallel passes the passes run on the Predictor's own threads while the caller
        prepares its next call (a stream's next slice), so those threads never wait for the
        tokeniser between calls; `PendingPredictions.done` tells an event loop when to collect.
        Bad texts raise DataError here, before anything is queued. With one pass at a time the
        passes run before this returns.
        """
        clean = [normalize_text(t) if isinstance(t, str) else None for t in texts]
        for i, (raw, text) in enumerate(zip(texts, clean, strict=True)):
            if text is None:
                raise DataError(f"text {i} is {type(raw).__name__}, not a string")
            if not text:
                raise DataError(f"text {i} is empty")
        tokens = tokenize(self.tokenizer, [t or "" for t in clean], self.max_length)
        pending = start_predict_proba(
            self.model,  # type: ignore[arg-type]
            tokens,
            self.pad_id,
            batch_size=self.batch_size,
            tokens_per_pass=self.tokens_per_pass,
            unpadded=self.unpadded,
            bf16=self.precision == "bf16",
            executor=self._executor,
            min_passes=self.parallel_passes,
        )
        # The memories' lookups run here, on the caller's thread, while the passes run on the
        # Predictor's own (with parallel passes); they release no GIL but hold it briefly.
        votes = {task: memory.votes(cast(list[str], clean)) for task, memory in self.memories.items()}
        return PendingPredictions(self, pending, len(tokens), votes)

    def _predictions(
        self, probs: dict[str, Any], count: int, votes: dict[str, np.ndarray]
    ) -> list[Prediction]:
        for task, task_votes in votes.items():
            probs[task] = mix_votes(probs[task], task_votes, self.memories[task].options.head_weight)
        sent, topic = probs["sentiment"], probs["topic"]
        bull = self.sentiment_labels.index("bullish") if "bullish" in self.sentiment_labels else None
        bear = self.sentiment_labels.index("bearish") if "bearish" in self.sentiment_labels else None
        results = []
        for i in range(count):
            s = sent[i]
            t_idx = int(topic[i].argmax())
            score = (float(s[bull]) if bull is not None else 0.0) - (
                float(s[bear]) if bear is not None else 0.0
            )
            results.append(
                Prediction(
                    topic=self.topic_labels[t_idx],
                    topic_score=float(topic[i][t_idx]),
                    sentiment=self.sentiment_labels[int(s.argmax())],
                    sentiment_probs={n: float(p) for n, p in zip(self.sentiment_labels, s, strict=True)},
                    sentiment_score=score,
                    model_version=self.version,
                )
            )
        return results


class PendingPredictions:
    """One `Predictor.submit` call whose forward passes may still be running.

    `done` (a concurrent.futures Future) resolves once every pass has ended; `result()`
    waits for that if need be and returns the predictions in input order, or raises the
    error of a failed pass.
    """

    def __init__(
        self, predictor: Predictor, pending: PendingProba, count: int, votes: dict[str, np.ndarray]
    ) -> None:
        self._predictor = predictor
        self._pending = pending
        self._count = count
        self._votes = votes
        self.done = pending.done

    def result(self) -> list[Prediction]:
        return self._predictor._predictions(self._pending.result(), self._count, self._votes)


def _inference_copy(
    model: MultiTaskClassifier,
    precision: Literal["fp32", "bf16", "int8"],
    *,
    fuse_qkv: bool,
    prepacked: bool = False,
) -> MultiTaskClassifier:
    """The Predictor's own copy of the model (the loaded one stays as saved), prepared once
    for `precision`.

    bf16: Linear weights converted once; autocast would cast the same 10.6M parameters on
    every `predict` call, several milliseconds that dominated a live stream's small calls.
    int8: see `quantize_int8`. `fuse_qkv` (unpadded BERT): one stacked query/key/value layer
    per attention block, built before quantisation (`unpadded.add_fused_qkv`). `prepacked`
    (bf16 only): weights reordered once for oneDNN, GELU fused (`bert_core.inference.linear_layers`).
    """
    copied = copy.deepcopy(model).eval()
    if fuse_qkv:
        add_fused_qkv(copied.encoder)
    if precision == "int8":
        quantize_int8(copied)
    elif precision == "bf16":
        for module in copied.modules():
            if isinstance(module, nn.Linear):
                module.to(torch.bfloat16)
        if prepacked:
            prepack_linears(copied)
    return copied


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost cause: torch wraps a compiler's failure in errors whose
    own first line says only which backend raised."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def quantize_int8(model: MultiTaskClassifier) -> None:
    """int8 copy of the encoder's Linear layers, in place: a scale per weight output channel
    and per input row (`linear_layers.Int8Linear`), so a text scores the same whatever shares
    its call.

    The classification heads (0.1 % of the arithmetic) stay fp32. History, measured on the
    default model's dev split (docs/performance.md#precision): torch's dynamic quantisation with one scale per
    weight matrix lost 1.2 / 1.3 points (sentiment / topic accuracy); per-channel weight
    scales with the feed-forward output projections in fp32 came within half a point on
    fp32-trained models, but with one activation scale per call it scored a headline
    differently by batch and lost 0.4-0.7 points on bf16-trained ones.
    """
    quantize_linears(model.encoder)
