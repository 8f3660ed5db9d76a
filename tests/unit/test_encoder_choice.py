"""The same multi-task recipe on either encoder shape: a tiny random BERT and a tiny random
MPNet (no token types, relative position buckets, <pad> = 1), each assembled from slices into
a model store as `finsent encoders install` does, then trained, saved, loaded and served."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bert_core import (
    DEFAULT_LABELS,
    LabelledData,
    ModelConfigError,
    MultiTaskClassifier,
    Predictor,
    TrainConfig,
    fine_tune,
    load_encoder,
    load_model_dir,
)
from bert_core.batching import collate, tokenize
from bert_core.encoders import encoder_path, install
from bert_core.inference.linear_layers import int8_available
from bert_core.recipes import load_task_files, save_result, split_sets
from services.cli import app
from services.settings import get_settings

from .encoder_parts import make_parts

LABELS = {t: list(DEFAULT_LABELS[t]) for t in ("sentiment", "topic")}  # type: ignore[index]


def _config(base_model: str, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "base_model": base_model,
        "epochs": 12,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "head_learning_rate": 3e-3,
        "warmup_ratio": 0.0,
        "freeze_word_embeddings": False,  # random tiny embeddings must learn
        "patience": 100,
        "evals_per_epoch": 1,
        "dropout": 0.0,
        "progress": False,
        "seed": 0,
        "precision": "fp32",
    }
    values.update(overrides)
    return TrainConfig(**values)


def _mean_loss(model: Any, tokenizer: Any, sets: dict[str, LabelledData]) -> float:
    """The classifier's mean cross-entropy on each set's labels, in eval mode."""
    model.eval()
    losses = []
    with torch.inference_mode():
        for task, data in sets.items():
            tokens = tokenize(tokenizer, data.texts, 64)
            batch = collate(tokens, list(range(len(tokens))), int(tokenizer.pad_token_id), data.labels)
            logits = model(batch.input_ids, batch.attention_mask, tasks=[task])[task]
            losses.append(float(torch.nn.functional.cross_entropy(logits, batch.labels)))
    return float(np.mean(losses))


@pytest.fixture(scope="module", params=["bert", "mpnet"])
def assembled(
    request: pytest.FixtureRequest,
    tiny_bert_dir: Path,
    tiny_mpnet_dir: Path,
    sentiment_csv: Path,
    topic_csv: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Each tiny encoder assembled from five slices into a store, then fine-tuned there."""
    source = tiny_bert_dir if request.param == "bert" else tiny_mpnet_dir
    work = tmp_path_factory.mktemp(f"assembled-{request.param}")
    parts = make_parts(source, work / "slices", name=f"tiny-{request.param}")
    store = work / "store"
    install(parts.spec, store, locate=parts.locate, progress=False)
    # the way `train --encoder NAME` finds it, in a catalogue of this one encoder
    base = encoder_path(parts.spec.name, store, catalog={parts.spec.name: parts.spec})
    assert base == str(store / parts.spec.name)
    sets = load_task_files({"sentiment": sentiment_csv, "topic": topic_csv})
    split = split_sets(sets, dev_fraction=0.2, seed=0)
    config = _config(base)
    torch.manual_seed(config.seed)  # as fine_tune does before building: the model it starts from
    encoder, tokenizer, _ = load_encoder(base)
    untrained = MultiTaskClassifier(encoder, LABELS, pooling=config.pooling, dropout=config.dropout)
    loss_before = _mean_loss(untrained, tokenizer, split.train)
    result = fine_tune(split.train, split.dev, LABELS, config)
    out = work / "model"
    save_result(result, out, split.train)
    return {
        "arch": request.param,
        "base": base,
        "split": split,
        "loss_before": loss_before,
        "result": result,
        "out": out,
    }


def test_training_on_the_assembled_encoder_lowers_the_loss_and_learns(assembled: dict[str, Any]) -> None:
    result, split = assembled["result"], assembled["split"]
    expected = "BertModel" if assembled["arch"] == "bert" else "MPNetModel"
    assert type(result.model.encoder).__name__ == expected
    assert result.model_config.base_model == assembled["base"]
    before = assembled["loss_before"]
    after = _mean_loss(result.model, result.tokenizer, split.train)
    assert after < 0.5 * before, (before, after)
    # keyword-decided labels: far above chance (1/3 sentiment, 1/20 topic) on texts never trained on
    assert result.dev_reports["sentiment"]["accuracy"] >= 0.8
    assert result.dev_reports["topic"]["accuracy"] >= 0.5


def test_a_saved_model_loads_with_the_same_outputs_and_serves(
    assembled: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    result, out = assembled["result"], assembled["out"]
    loaded = load_model_dir(out)
    assert type(loaded.model.encoder).__name__ == type(result.model.encoder).__name__
    texts = ["acme shares surge after earnings beats", "fed holds rates steady", "oil plunges"]
    tokens = tokenize(loaded.tokenizer, texts, 64)
    batch = collate(tokens, [0, 1, 2], int(loaded.tokenizer.pad_token_id))
    with torch.inference_mode():
        want = result.model.eval()(batch.input_ids, batch.attention_mask)
        got = loaded.model(batch.input_ids, batch.attention_mask)
    for task in want:
        torch.testing.assert_close(got[task], want[task])
    with caplog.at_level(logging.WARNING, logger="bert_core.inference.predictor"):
        predictor = Predictor.load(out)
    predictions = predictor.predict(texts)
    assert [p.model_version for p in predictions] == [loaded.manifest.version] * 3
    assert predictions[0].sentiment == "bullish"
    fallback = [r for r in caplog.records if "BERT-only" in r.getMessage()]
    if assembled["arch"] == "bert":
        assert predictor.unpadded and not fallback
    else:
        assert not predictor.unpadded and len(fallback) == 1


@pytest.mark.parametrize("assembled", ["mpnet"], indirect=True)
def test_a_non_bert_encoder_falls_back_to_padded_passes_with_one_warning(
    assembled: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        predictor = Predictor.load(assembled["out"], compiled=True)  # the worker's default
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "MPNetModel encoder: the unpadded and compiled pass is BERT-only" in warnings[0]
    assert not predictor.compiled and not predictor.unpadded
    assert len(predictor.predict(["fed holds rates steady"])) == 1
    with pytest.raises(ModelConfigError, match="unpadded inference supports BERT encoders only"):
        Predictor.load(assembled["out"], _unpadded=True)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_paths_serve_a_non_bert_encoder(assembled: dict[str, Any], precision: str) -> None:
    if precision == "int8" and not int8_available():
        pytest.skip("torch has no oneDNN quantised linear ops here")
    texts = [t for d in assembled["split"].dev.values() for t in d.texts]
    reference = Predictor.load(assembled["out"]).predict(texts)
    reduced = Predictor.load(assembled["out"], precision=precision).predict(texts)  # type: ignore[arg-type]
    agree = np.mean([a.sentiment == b.sentiment for a, b in zip(reference, reduced, strict=True)])
    assert agree >= 0.9


def test_train_command_takes_an_encoder_folder_and_the_default_learning_rate(
    tiny_mpnet_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    get_settings.cache_clear()
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--sentiment-data",
            str(sentiment_csv),
            "--topic-data",
            str(topic_csv),
            "--out",
            str(out),
            "--encoder",
            str(tiny_mpnet_dir),
            "--epochs",
            "1",
        ],
        env={"FINSENT_TORCH_THREADS": "1"},
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    loaded = load_model_dir(out)
    assert type(loaded.model.encoder).__name__ == "MPNetModel"
    assert loaded.config.base_model == str(tiny_mpnet_dir)
    assert loaded.config.training["learning_rate"] == TrainConfig.learning_rate
