"""The unpadded encoder pass compiled with `torch.compile` (inductor's C++ backend), for the
Predictor's inference copy.

Why: run op by op, a pass makes a separate trip through memory, and a separate return to
Python for the GIL, for every small step between the matrix products: the int8 layers'
per-row quantisation (row maximum, divide, round, convert, zero point) and their scale and
bias, GELU, the residual adds and LayerNorms, the scatter into attention's layout and back.
Inductor fuses those steps into a few generated C++ loops and keeps oneDNN's matrix products
(docs/performance.md#compiled-pass for the measured gain). The operations are the same; results differ
from eager mode only by floating-point rounding order (fp32: ≤ 1e-5), which in int8 can move
a value across a rounding boundary of its row's quantisation.

What it costs: a C++ compiler on the serving machine, and a compilation whenever a
Predictor is made (30-60 s for the default model on two cores: with frozen weights inductor
bypasses its graph cache, so a restart pays it again). The
graph is traced for any number of texts and tokens (`dynamic=True`); `warm_up` compiles it
before the first real call, and calls never compile, so a stream never waits for a compilation.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Sequence

import torch
import torch._dynamo
import torch._inductor.config
from torch import nn

from bert_core.inference import unpadded


class _PackedEncode(nn.Module):
    """`unpadded.encode` of one encoder as a module, so that inductor's freezing can treat its
    weights (including int8 layers' prepacked oneDNN weights) as constants.

    Each instance runs its own copy of `forward`'s code: dynamo files compiled graphs under
    the code object they were traced from, at most `recompile_limit` (8) per code object, and
    past that silently runs eager. A worker that hot-reloads models makes one of these per
    model; with a shared code object the fifth model (two graphs each) would run uncompiled.
    With its own code, a model's graphs are its own; `CompiledPackedEncoder` drops them
    (and the frozen weights they hold) when it is collected.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        shared = _PackedEncode._encode
        own = types.FunctionType(shared.__code__.replace(), shared.__globals__, shared.__name__)
        self.forward = types.MethodType(own, self)

    def _encode(self, batch: unpadded.PackedBatch) -> torch.Tensor:
        return unpadded.encode(self.encoder, batch)


class CompiledPackedEncoder:
    """Callable like `unpadded.encode(encoder, batch)`, for the one encoder it was made for.

    Not an `nn.Module` on purpose: held as an attribute of the classifier, it must not join the
    module tree (state dicts, `.to()`, `modules()`), which already holds the encoder."""

    def __init__(self, encoder: nn.Module) -> None:
        if not unpadded.supports(encoder):
            name = type(encoder).__name__
            raise ValueError(f"compiled unpadded inference supports BERT encoders only, not {name}")
        self._encoder = encoder
        # Freezing: weights become constants of the graph, which inductor's int8 lowering needs
        # (it reads the prepacked weights at compile time). Set process-wide, not per compile:
        # dynamo reads it while tracing, before a per-compile option would apply, and a
        # recompilation later (a new shape) must see it too.
        torch._inductor.config.freezing = True
        torch._inductor.config.cpp_wrapper = True
        module = _PackedEncode(encoder)
        self._compiling = torch.compile(module, dynamic=True)
        # Serving runs the graphs `warm_up` compiled and never compiles: a pass of a kind the
        # warm-up did not foresee runs eager (same results, slower) instead of stalling a pass
        # thread for a minute's compilation - which, tried once inside the Predictor's pass
        # threads, failed there (inductor's int8 lowering found no frozen weights).
        self._serving = torch._dynamo.run(module.forward)
        # dynamo's cache on the code object holds the graphs' constants (the weights), and
        # something in dynamo keeps the code object alive after the module is gone.
        weakref.finalize(self, torch._dynamo.reset_code, module.forward.__code__)

    def __deepcopy__(self, memo: dict[int, object]) -> object:
        """A copied model gets the uncompiled pass: these graphs hold the original's weights."""
        return unpadded.encode

    def __call__(self, encoder: nn.Module, batch: unpadded.PackedBatch) -> torch.Tensor:
        if encoder is not self._encoder:
            raise ValueError("this compiled pass belongs to another encoder")
        return self._serving(batch)

    def warm_up(self, token_ids: Sequence[Sequence[int]]) -> None:
        """Compile now, for every kind of pass a stream makes, as serving never compiles:
        dynamo specialises sizes of 1, so passes of one attention chunk and of several need a
        graph each (one text and several texts in one chunk share one, measured; both are run
        here all the same). `token_ids`: two or more texts that fit one chunk together."""
        if len(token_ids) < 2 or sum(map(len, token_ids[:2])) > unpadded.CHUNK_ROWS:
            raise ValueError("warm_up needs two or more texts that fit one attention chunk together")
        many = [token_ids[i % len(token_ids)] for i in range(2 * unpadded.CHUNK_ROWS)]
        passes = (many, token_ids[:1], token_ids[:2])
        with torch.inference_mode():
            for texts in passes:
                self._compiling(unpadded.pack(texts, list(range(len(texts)))))
