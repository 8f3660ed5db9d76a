"""The Predictor: labels, probabilities, order, truncation, input checks, precisions."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bert_core import DataError, ModelConfigError, PendingPredictions, Prediction, Predictor, load_model_dir
from bert_core.inference.linear_layers import Int8Linear, PrepackedLinear
from bert_core.inference.linear_layers import prepacked_available as prepacked_linears_available

BEARISH = "acme shares plunge after earnings misses estimates"
BULLISH = "globex stock surges as profit beats"
NEUTRAL = "initech announces meeting"
OIL = "oil crude prices rise"


@pytest.fixture(scope="module")
def predictor(saved_model_dir: Path) -> Predictor:
    return Predictor.load(saved_model_dir, precision="fp32", batch_size=2)


def _probs(preds: list[Prediction]) -> np.ndarray:
    return np.array([[p.sentiment_probs[n] for n in ("bearish", "bullish", "neutral")] for p in preds])


def test_prediction_fields(predictor: Predictor, saved_model_dir: Path) -> None:
    version = load_model_dir(saved_model_dir).manifest.version
    preds = predictor.predict([BEARISH, BULLISH, NEUTRAL, OIL])
    assert len(preds) == 4
    for pred in preds:
        assert isinstance(pred, Prediction)
        assert set(pred.sentiment_probs) == {"bearish", "bullish", "neutral"}
        assert sum(pred.sentiment_probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(0.0 <= p <= 1.0 for p in pred.sentiment_probs.values())
        assert pred.sentiment_score == pytest.approx(
            pred.sentiment_probs["bullish"] - pred.sentiment_probs["bearish"], abs=1e-7
        )
        assert -1.0 <= pred.sentiment_score <= 1.0
        assert pred.sentiment == max(pred.sentiment_probs, key=pred.sentiment_probs.get)  # type: ignore[arg-type]
        assert pred.topic in predictor.topic_labels
        assert 1 / 20 <= pred.topic_score <= 1.0
        assert pred.model_version == version
        assert pred.to_dict()["sentiment_probs"] == pred.sentiment_probs


def test_trained_model_labels_clear_cases(predictor: Predictor) -> None:
    bear, bull, neutral, oil = predictor.predict([BEARISH, BULLISH, NEUTRAL, OIL])
    assert bear.sentiment == "bearish"
    assert bear.sentiment_score < 0
    assert bull.sentiment == "bullish"
    assert bull.sentiment_score > 0
    assert neutral.sentiment == "neutral"
    assert oil.topic == "Energy / Oil"


def test_results_keep_input_order(predictor: Predictor) -> None:
    # Lengths 12, 5, 3, 8 words: batches of 2 are formed in length order, not input order.
    texts = [
        "acme shares plunge after earnings misses estimates again the stock falls down today",
        BULLISH,
        NEUTRAL,
        "fed rates hike as inflation jobs data surprise markets",
    ]
    together = _probs(predictor.predict(texts))
    one_by_one = np.vstack([_probs(predictor.predict([t])) for t in texts])
    # The texts get clearly different probabilities, so a mix-up could not go unnoticed.
    assert min(np.abs(together[i] - together[j]).max() for i in range(4) for j in range(i + 1, 4)) > 0.05
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    reversed_probs = _probs(predictor.predict(texts[::-1]))
    np.testing.assert_allclose(reversed_probs, together[::-1], atol=1e-5)


def test_long_text_is_truncated(predictor: Predictor) -> None:
    words = (BEARISH.split() * 1000)[:5000]
    long_text = " ".join(words)
    (pred,) = predictor.predict([long_text])
    assert sum(pred.sentiment_probs.values()) == pytest.approx(1.0, abs=1e-5)
    # Every word is one token: the model sees [CLS] + the first max_length - 2 words + [SEP].
    assert predictor.max_length == 64
    (head,) = predictor.predict([" ".join(words[:62])])
    np.testing.assert_allclose(_probs([pred]), _probs([head]), atol=1e-6)


@pytest.mark.parametrize("bad", ["", "   ", "https://t.co/only-a-link"])
def test_empty_text_is_refused(predictor: Predictor, bad: str) -> None:
    with pytest.raises(DataError, match="text 1 is empty"):
        predictor.predict([BULLISH, bad])


@pytest.mark.parametrize("bad", [None, 42, b"bytes"])
def test_non_string_is_refused(predictor: Predictor, bad: object) -> None:
    with pytest.raises(DataError, match=f"text 0 is {type(bad).__name__}, not a string"):
        predictor.predict([bad])  # type: ignore[list-item]


def test_no_texts_no_predictions(predictor: Predictor) -> None:
    assert predictor.predict([]) == []


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precision_is_close_to_fp32(
    predictor: Predictor, saved_model_dir: Path, precision: str
) -> None:
    texts = [BEARISH, BULLISH, NEUTRAL, OIL]
    reference = predictor.predict(texts)
    fast = Predictor.load(saved_model_dir, precision=precision)  # type: ignore[arg-type]
    assert fast.precision == precision
    preds = fast.predict(texts)
    assert len(preds) == len(reference)
    assert _probs(preds).shape == _probs(reference).shape == (4, 3)
    np.testing.assert_allclose(_probs(preds), _probs(reference), atol=0.05)
    for ours, ref in zip(preds, reference, strict=True):
        assert sum(ours.sentiment_probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert ours.sentiment == ref.sentiment
        # The top topic probability moves no more than the probabilities do.
        assert ours.topic_score == pytest.approx(ref.topic_score, abs=0.05)


def test_bf16_predictor_equals_autocast_of_the_fp32_model_and_leaves_it_fp32(saved_model_dir: Path) -> None:
    from bert_core.batching import tokenize
    from bert_core.inference.passes import predict_proba

    loaded = load_model_dir(saved_model_dir)
    fast = Predictor(loaded, precision="bf16", _prepacked=False)  # prepacked: the next tests
    texts = [BEARISH, BULLISH, NEUTRAL, OIL]
    preds = fast.predict(texts)
    tokens = tokenize(loaded.tokenizer, texts, loaded.config.max_length)
    reference = predict_proba(loaded.model, tokens, fast.pad_id, bf16=True)["sentiment"]
    order = fast.sentiment_labels
    np.testing.assert_array_equal(
        np.array([[p.sentiment_probs[n] for n in order] for p in preds], dtype=np.float32), reference
    )
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())  # converted a copy


@pytest.mark.skipif(not prepacked_linears_available(), reason="needs oneDNN bf16 (AVX512-BF16 or AMX)")
def test_prepacked_bf16_predictor_agrees_with_the_plain_bf16_one(saved_model_dir: Path) -> None:
    texts = [BEARISH, BULLISH, NEUTRAL, OIL, "Fed holds rates", "Oil slides as stocks build"]
    plain = Predictor.load(saved_model_dir, precision="bf16", _prepacked=False)
    fast = Predictor.load(saved_model_dir, precision="bf16", parallel_passes=2)
    assert fast.prepacked and not plain.prepacked
    assert any(isinstance(m, PrepackedLinear) for m in fast.model.modules())
    assert not any(type(m) is nn.Linear for m in fast.model.modules())
    ours, reference = fast.predict(texts), plain.predict(texts)
    # Same weights and operations; only where bf16 rounds differs (GELU runs inside the layer).
    np.testing.assert_allclose(_probs(ours), _probs(reference), atol=0.02)
    assert [p.topic_score for p in ours] == pytest.approx([p.topic_score for p in reference], abs=0.02)


@pytest.mark.skipif(not prepacked_linears_available(), reason="needs oneDNN bf16 (AVX512-BF16 or AMX)")
def test_prepacked_linear_computes_the_linear_layer_and_its_gelu() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(48, 80).to(torch.bfloat16)
    x = torch.randn(7, 48)
    expected = nn.functional.linear(x.to(torch.bfloat16), layer.weight, layer.bias).float()
    got = PrepackedLinear(layer)(x).float()
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=1e-2)
    fused = PrepackedLinear(layer, gelu=True)(x).float()
    torch.testing.assert_close(fused, nn.functional.gelu(expected), atol=3e-2, rtol=2e-2)
    assert not torch.equal(fused, got)  # the activation really ran


def test_prepacked_needs_the_bf16_path(saved_model_dir: Path) -> None:
    with pytest.raises(ModelConfigError, match="prepacked linear layers need precision bf16"):
        Predictor.load(saved_model_dir, precision="fp32", _prepacked=True)
    assert not Predictor.load(saved_model_dir, precision="fp32").prepacked


def test_prepacking_fuses_only_exact_gelu() -> None:
    from transformers.activations import ACT2FN

    from bert_core.inference.linear_layers import _is_exact_gelu

    assert _is_exact_gelu(ACT2FN["gelu"]) and _is_exact_gelu(nn.GELU())
    assert not _is_exact_gelu(ACT2FN["gelu_new"]) and not _is_exact_gelu(nn.GELU(approximate="tanh"))
    assert not _is_exact_gelu(nn.ReLU())


def test_auto_precision_resolves_to_a_concrete_one(saved_model_dir: Path) -> None:
    from bert_core.inference import resolve_precision

    fast = Predictor.load(saved_model_dir, precision="auto")
    assert fast.precision == resolve_precision("auto") != "auto"


@pytest.mark.parametrize(
    ("amx", "int8", "bf16", "expected"),
    [
        (True, True, True, "bf16"),  # AMX: bf16 tiles beat every int8 path measured
        (False, True, True, "int8"),  # AVX512-BF16 without AMX (Zen 4/5): int8 measured faster
        (False, True, False, "int8"),  # AVX2: int8, bf16 would be emulated
        (False, False, True, "bf16"),
        (False, False, False, "fp32"),
    ],
)
def test_auto_precision_by_cpu(
    monkeypatch: pytest.MonkeyPatch, amx: bool, int8: bool, bf16: bool, expected: str
) -> None:
    from bert_core.inference import predictor as inference

    monkeypatch.setattr(inference, "cpu_has_amx_bf16", lambda: amx)
    monkeypatch.setattr(inference, "int8_available", lambda: int8)
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: bf16)
    assert inference.resolve_precision("auto") == expected
    assert inference.resolve_precision("fp32") == "fp32"


def test_warm_up_scores_every_common_length_once(saved_model_dir: Path) -> None:
    from bert_core.inference.predictor import WARM_UP_TEXTS

    predictor = Predictor.load(saved_model_dir)
    submitted: list[int] = []
    submit = predictor.submit

    def counting_submit(texts: Sequence[str]) -> PendingPredictions:
        submitted.append(len(texts))
        return submit(texts)

    predictor.submit = counting_submit  # type: ignore[method-assign]
    predictor.warm_up()
    predictor.warm_up()  # once per Predictor
    assert submitted == [len(WARM_UP_TEXTS)]
    lengths = {len(predictor.tokenizer(t)["input_ids"]) for t in WARM_UP_TEXTS}
    assert len(lengths) >= 6 and max(lengths) > 40  # short to long headlines


def test_int8_does_not_change_the_loaded_model(saved_model_dir: Path) -> None:
    loaded = load_model_dir(saved_model_dir)
    weight = loaded.model.heads["sentiment"].weight.detach().clone()
    Predictor(loaded, precision="int8")
    assert loaded.model.heads["sentiment"].weight.dtype == weight.dtype
    assert (loaded.model.heads["sentiment"].weight == weight).all()
    assert not hasattr(loaded.model.encoder.encoder.layer[0].attention.self, "fused_qkv")


def test_int8_quantises_every_encoder_linear_and_keeps_the_heads_fp32(saved_model_dir: Path) -> None:
    fast = Predictor.load(saved_model_dir, precision="int8")
    layer = fast.model.encoder.encoder.layer[0]
    quantised = [
        layer.attention.self.fused_qkv,
        layer.attention.output.dense,
        layer.intermediate.dense,
        layer.output.dense,
    ]
    for module in quantised:
        assert isinstance(module, Int8Linear)
    assert type(fast.model.heads["sentiment"]) is torch.nn.Linear


@pytest.mark.parametrize("unpadded", [True, False])
def test_int8_scores_a_text_the_same_whatever_shares_its_call(saved_model_dir: Path, unpadded: bool) -> None:
    """One activation scale per call made a headline's int8 score depend on its neighbours
    (2.4 % of sentiment labels flipped between call sizes; docs/performance.md#precision);
    per-row scales do not."""
    fast = Predictor.load(saved_model_dir, precision="int8", _unpadded=unpadded, batch_size=8)
    texts = [BEARISH, BULLISH, NEUTRAL, OIL]
    loud = ["ACME $$$ 1000000000 %%% !!! " * 8]  # a neighbour with very different activations
    alone = _probs([fast.predict([t])[0] for t in texts])
    together = _probs(fast.predict(texts + loud * 20)[: len(texts)])
    # float rounding outside the int8 products only (one scale per call moved them by ~1e-3)
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_parallel_passes_give_the_same_predictions(saved_model_dir: Path, precision: str) -> None:
    texts = [BEARISH, BULLISH, NEUTRAL, OIL] * 5
    threads = torch.get_num_threads()
    try:
        one = Predictor.load(saved_model_dir, precision=precision, threads=2)  # type: ignore[arg-type]
        reference = _probs(one.predict(texts))
        two = Predictor.load(saved_model_dir, precision=precision, threads=2, parallel_passes=2)  # type: ignore[arg-type]
        assert two.parallel_passes == 2
        assert torch.get_num_threads() == 1  # two passes side by side, one torch thread each
        np.testing.assert_allclose(
            _probs(two.predict(texts)), reference, atol=1e-5 if precision == "fp32" else 2e-2
        )
    finally:
        torch.set_num_threads(threads)


def test_parallel_passes_below_one_are_refused(saved_model_dir: Path) -> None:
    from bert_core import ModelConfigError

    with pytest.raises(ModelConfigError, match="parallel_passes"):
        Predictor.load(saved_model_dir, parallel_passes=0)


def _recording_executor(sizes: list[int]) -> ThreadPoolExecutor:
    """Two pass threads that record how many texts each submitted pass holds."""

    class RecordingExecutor(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[no-untyped-def, override]
            sizes.append(len(args[0]))
            return super().submit(fn, *args, **kwargs)

    return RecordingExecutor(2)


@pytest.mark.parametrize(
    ("texts", "min_split_tokens", "passes"), [(6, 10, 2), (6, 0, 2), (6, 64, 1), (8, 20, 2)]
)
def test_a_call_is_cut_into_one_pass_per_thread_while_each_keeps_enough_tokens(
    texts: int, min_split_tokens: int, passes: int
) -> None:
    """Texts of 10 tokens: 60 of them make two passes at a minimum of 10 or 0 tokens per
    pass, one at 64; the single pass still goes to a pass thread, so the caller is free."""
    from bert_core.inference.passes import predict_proba
    from tests.unit.test_inference_unpadded import tiny_classifier

    model = tiny_classifier()
    tokens = [[2, *range(5, 13), 3] for _ in range(texts)]
    reference = predict_proba(model, tokens, 0)
    sizes: list[int] = []
    with _recording_executor(sizes) as executor:
        out = predict_proba(
            model, tokens, 0, executor=executor, min_passes=2, min_split_tokens=min_split_tokens
        )
    assert len(sizes) == passes and sum(sizes) == texts
    for task, values in reference.items():
        np.testing.assert_allclose(out[task], values, atol=1e-5)


def test_passes_are_rebalanced_when_their_count_already_fits_the_threads() -> None:
    """105 texts of 20 tokens fill a 2,048-token pass and leave 60 tokens for a second one:
    two passes on two threads, one of them nearly idle, unless they are re-cut."""
    from bert_core.inference.passes import predict_proba
    from tests.unit.test_inference_unpadded import tiny_classifier

    sizes: list[int] = []
    tokens = [[2] + [7] * 19 for _ in range(105)]
    with _recording_executor(sizes) as executor:
        predict_proba(tiny_classifier(), tokens, 0, executor=executor, min_passes=2, tokens_per_pass=2048)
    assert sorted(sizes) == [52, 53]


def test_a_predictor_keeps_one_model_not_the_loaded_fp32_one_beside_its_copy(saved_model_dir: Path) -> None:
    import gc
    import weakref

    predictor = Predictor.load(saved_model_dir, precision="int8")
    assert predictor.loaded.model is predictor.model
    loaded = load_model_dir(saved_model_dir)
    original = weakref.ref(loaded.model)
    predictor = Predictor(loaded, precision="int8")
    del loaded
    gc.collect()
    assert original() is None  # the fp32 weights were freed: only the prepared copy is held
    assert predictor.predict(["Shares jump after record profit"])[0].sentiment in predictor.sentiment_labels


def test_submit_returns_while_the_passes_run_and_gives_what_predict_gives(saved_model_dir: Path) -> None:
    """`submit` queues the passes and returns: a stream tokenises its next slice meanwhile.
    The pass threads are held back here until `submit` has returned, so this fails if it waits."""
    import threading

    texts = [BEARISH, BULLISH, NEUTRAL, OIL] * 5
    threads = torch.get_num_threads()
    try:
        predictor = Predictor.load(saved_model_dir, threads=2, parallel_passes=2)
        reference = _probs(predictor.predict(texts))
        gate = threading.Event()
        assert predictor._executor is not None
        for _ in range(predictor.parallel_passes):  # occupy every pass thread until the gate opens
            predictor._executor.submit(gate.wait, 10)
        pending = predictor.submit(texts)
        assert not pending.done.done()  # queued behind the held threads, not run by submit
        gate.set()
        pending.done.result(timeout=10)
        np.testing.assert_allclose(_probs(pending.result()), reference, atol=1e-6)
    finally:
        torch.set_num_threads(threads)


def test_submit_refuses_a_bad_text_before_queueing_anything(predictor: Predictor) -> None:
    from bert_core import DataError

    with pytest.raises(DataError, match="text 1 is empty"):
        predictor.submit(["Shares jump", "   "])


def test_a_failed_pass_is_raised_by_result_after_every_pass_ended() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from bert_core.inference.passes import start_predict_proba
    from tests.unit.test_inference_unpadded import tiny_classifier, token_lists

    model = tiny_classifier().eval()
    tokens = token_lists(6, seed=3, longest=10)
    tokens[0] = [10**9]  # an id far outside the vocabulary: that pass's embedding lookup fails
    with ThreadPoolExecutor(2) as executor:
        pending = start_predict_proba(model, tokens, 0, executor=executor, min_passes=2)
        pending.done.result(timeout=10)
        assert all(future.done() for future in pending._futures)  # done means every pass ended
        with pytest.raises(IndexError):
            pending.result()


def test_start_predict_proba_needs_a_model_in_eval_mode() -> None:
    from bert_core.inference.passes import start_predict_proba
    from tests.unit.test_inference_unpadded import tiny_classifier, token_lists

    with pytest.raises(ValueError, match="eval mode"):
        start_predict_proba(tiny_classifier().train(), token_lists(2, seed=1, longest=5), 0)
