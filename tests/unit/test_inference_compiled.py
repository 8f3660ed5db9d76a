"""The compiled encoder pass (bert_core.inference.compiled) computes what the eager one does, for every
kind of pass a stream makes, for each model of a process, and lets go of the model after."""

from __future__ import annotations

import copy
import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from bert_core import CompileError, Predictor
from bert_core.inference import unpadded
from bert_core.inference.compiled import CompiledPackedEncoder
from tests.unit.test_inference_unpadded import tiny_classifier, token_lists

# Two texts that fit one attention chunk together, as `warm_up` needs.
WARM_UP = [[2, 5, 6, 7], [2, 9]]


def passes() -> list[unpadded.PackedBatch]:
    """One text; several texts in one attention chunk; several chunks."""
    texts = token_lists(40, seed=5, longest=40)
    return [unpadded.pack(texts, [0]), unpadded.pack(texts, [1, 2]), unpadded.pack(texts, list(range(40)))]


def compiled_graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


def test_compiled_pass_matches_eager_and_never_compiles_after_warm_up() -> None:
    model = tiny_classifier()
    compiled = CompiledPackedEncoder(model.encoder)
    before = compiled_graphs()
    compiled.warm_up(WARM_UP)
    assert compiled_graphs() - before == 2  # one attention chunk, and several
    with torch.inference_mode():
        for batch in passes():
            expected = unpadded.encode(model.encoder, batch)
            with torch.profiler.profile() as profile:
                got = compiled(model.encoder, batch)
            assert any("CompiledFxGraph" in e.name for e in profile.events()), "ran eager"
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # A copied model gets the uncompiled pass: these graphs hold the original's weights.
    assert copy.deepcopy(compiled) is unpadded.encode


def test_each_model_gets_its_own_graphs_and_frees_them() -> None:
    first, second = tiny_classifier(), tiny_classifier()
    with torch.no_grad():
        for parameter in second.encoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    # Dynamo keeps at most `recompile_limit` graphs per code object, then runs eager; held to
    # two here (one model's worth), each model must still be compiled, its own weights frozen in.
    models = (first, second, first)
    encoders = [CompiledPackedEncoder(m.encoder) for m in models]
    with torch._dynamo.config.patch(recompile_limit=2):
        for encoder in encoders:
            before = compiled_graphs()
            encoder.warm_up(WARM_UP)
            assert compiled_graphs() - before == 2
    batch = passes()[2]
    with torch.inference_mode():
        for encoder, model in zip(encoders, models, strict=True):
            expected = unpadded.encode(model.encoder, batch)
            torch.testing.assert_close(encoder(model.encoder, batch), expected, rtol=1e-5, atol=1e-5)
    weight = weakref.ref(second.encoder.encoder.layer[0].output.dense.weight)
    del encoders, encoder, models, model, second
    gc.collect()
    assert weight() is None, "the compiled graphs still hold a released model's weights"


def test_calls_never_compile_they_run_eager_until_warmed_up() -> None:
    model = tiny_classifier()
    compiled = CompiledPackedEncoder(model.encoder)
    before = compiled_graphs()
    with torch.inference_mode():
        for batch in passes():
            expected = unpadded.encode(model.encoder, batch)
            torch.testing.assert_close(compiled(model.encoder, batch), expected, rtol=1e-5, atol=1e-5)
    assert compiled_graphs() == before


def test_a_compiled_pass_refuses_another_encoder() -> None:
    compiled = CompiledPackedEncoder(tiny_classifier().encoder)
    with pytest.raises(ValueError, match="another encoder"):
        compiled(tiny_classifier().encoder, passes()[0])


def test_compiled_int8_predictor_scores_like_the_eager_one(saved_model_dir: Path) -> None:
    texts = ["Stocks rise", "Profit falls at the bank", "Shares climb after record quarter"] * 7
    eager = Predictor.load(saved_model_dir, precision="int8", threads=1)
    compiled = Predictor.load(saved_model_dir, precision="int8", threads=1, compiled=True)
    assert compiled.compiled and not eager.compiled
    with torch.profiler.profile() as profile:  # one pass at a time: in this thread
        compiled.predict(texts[:2])
    assert any("CompiledFxGraph" in e.name for e in profile.events()), "the Predictor ran eager"
    for calls in ([texts], [texts[:1], texts[1:3]]):  # one call; small calls
        got = [p for call in calls for p in compiled.predict(call)]
        want = [p for call in calls for p in eager.predict(call)]
        # int8: the same operations in another order may round a value into the next step of
        # its row's quantisation, so probabilities agree closely, not exactly.
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(
                [g.sentiment_probs[k] for k in sorted(g.sentiment_probs)],
                [w.sentiment_probs[k] for k in sorted(w.sentiment_probs)],
                atol=0.02,
            )


def test_without_the_unpadded_path_the_model_is_served_uncompiled(
    saved_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    predictor = Predictor.load(saved_model_dir, _unpadded=False, compiled=True)
    assert not predictor.compiled and predictor.model.packed_encode is unpadded.encode
    assert "serving this model uncompiled" in caplog.text
    assert len(predictor.predict(["Stocks rise"])) == 1


def test_no_compiler_is_one_clear_error(saved_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bert_core.inference.predictor.compiler_available", lambda: False)
    with pytest.raises(CompileError, match=r"needs a C\+\+ compiler .*FINSENT_COMPILE=false"):
        Predictor.load(saved_model_dir, compiled=True)
