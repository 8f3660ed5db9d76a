"""Model directories: save, load, manifest hashes, tamper detection."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bert_core import (
    ModelIntegrityError,
    Predictor,
    load_model_dir,
    save_model_dir,
    verify_model_dir,
)
from bert_core.batching import tokenize
from bert_core.inference.passes import predict_proba

TEXTS = [
    "acme shares plunge after earnings misses",
    "globex stock surges as profit beats estimates",
    "fed holds rates as inflation cools",
    "oil prices rise as opec cuts output",
]


@pytest.fixture()
def model_copy(saved_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session model directory, safe to damage."""
    return Path(shutil.copytree(saved_model_dir, tmp_path / "model"))


def test_directory_contents(saved_model_dir: Path) -> None:
    names = {p.name for p in saved_model_dir.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "finsent.json",
        "metrics.json",
        "manifest.json",
        "README.md",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= names
    # No temporary directory is left next to it.
    assert [p.name for p in saved_model_dir.parent.iterdir()] == [saved_model_dir.name]


def test_manifest_lists_every_file_with_its_sha256(saved_model_dir: Path) -> None:
    manifest = json.loads((saved_model_dir / "manifest.json").read_text())
    files = {p.name for p in saved_model_dir.iterdir() if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == files
    for name, digest in manifest["files"].items():
        assert digest == hashlib.sha256((saved_model_dir / name).read_bytes()).hexdigest(), name
    weights_sha = manifest["files"]["model.safetensors"]
    assert manifest["version"].endswith("-" + weights_sha[:8])
    assert manifest["parent"] is None
    assert len(manifest["data_hash"]) == 64
    assert verify_model_dir(saved_model_dir).version == manifest["version"]


def test_round_trip_gives_identical_probabilities(trained, saved_model_dir: Path) -> None:
    result = trained.result
    loaded = load_model_dir(saved_model_dir)
    assert loaded.config.labels == result.model_config.labels
    assert loaded.config.pooling == result.model_config.pooling
    assert loaded.config.max_length == result.model_config.max_length
    assert loaded.metrics["dev"]["sentiment"]["macro_f1"] == pytest.approx(
        result.dev_reports["sentiment"]["macro_f1"]
    )
    tokens = tokenize(result.tokenizer, TEXTS, 64)
    assert tokenize(loaded.tokenizer, TEXTS, 64) == tokens
    in_memory = predict_proba(result.model, tokens, 0)
    from_disk = predict_proba(loaded.model, tokens, 0)
    for task in ("sentiment", "topic"):
        np.testing.assert_array_equal(in_memory[task], from_disk[task])
    predictions = Predictor(loaded).predict(TEXTS)
    for i, pred in enumerate(predictions):
        probs = [pred.sentiment_probs[n] for n in ("bearish", "bullish", "neutral")]
        np.testing.assert_allclose(probs, in_memory["sentiment"][i], rtol=0, atol=1e-6)


def test_model_card_describes_the_model(saved_model_dir: Path) -> None:
    card = (saved_model_dir / "README.md").read_text()
    version = json.loads((saved_model_dir / "manifest.json").read_text())["version"]
    assert version in card
    assert "bearish, bullish, neutral" in card
    assert "topic head (20 classes)" in card


def test_flipped_byte_in_weights_is_refused(model_copy: Path) -> None:
    weights = model_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as info:
        load_model_dir(model_copy)
    message = str(info.value)
    assert "model.safetensors does not match its manifest hash" in message
    assert "refusing to load" in message
    assert str(model_copy) in message
    with pytest.raises(ModelIntegrityError):
        Predictor.load(model_copy)


def test_edited_config_is_refused(model_copy: Path) -> None:
    cfg = json.loads((model_copy / "finsent.json").read_text())
    cfg["max_length"] = 512
    (model_copy / "finsent.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelIntegrityError, match=r"finsent\.json does not match"):
        verify_model_dir(model_copy)


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "metrics.json"])
def test_missing_file_is_refused(model_copy: Path, name: str) -> None:
    (model_copy / name).unlink()
    with pytest.raises(ModelIntegrityError, match=re.escape(f"{name} is missing")):
        load_model_dir(model_copy)


def test_missing_manifest_is_refused(model_copy: Path) -> None:
    (model_copy / "manifest.json").unlink()
    with pytest.raises(ModelIntegrityError, match="not a finsent model directory"):
        load_model_dir(model_copy)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="no such model directory"):
        load_model_dir(tmp_path / "nothing-here")


def test_save_refuses_a_non_empty_directory(trained, tmp_path: Path) -> None:
    result = trained.result
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(ModelIntegrityError, match="not empty"):
        save_model_dir(out, result.model, result.tokenizer, result.model_config, metrics={}, data_hash="x")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"
    # No half-written temporary directory is left behind.
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_save_with_overwrite_replaces_the_directory(trained, tmp_path: Path) -> None:
    result = trained.result
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    manifest = save_model_dir(
        out,
        result.model,
        result.tokenizer,
        result.model_config,
        metrics={},
        data_hash="abc",
        parent="v0",
        overwrite=True,
    )
    assert not (out / "stale.txt").exists()
    assert verify_model_dir(out).version == manifest.version
    assert manifest.parent == "v0"
    assert manifest.data_hash == "abc"
    # An empty directory can be written into without overwrite.
    empty = tmp_path / "empty"
    empty.mkdir()
    save_model_dir(empty, result.model, result.tokenizer, result.model_config, metrics={}, data_hash="x")
    assert (empty / "manifest.json").is_file()


def test_a_topic_memory_is_saved_loaded_and_mixed_into_what_the_predictor_serves(
    trained, tmp_path: Path
) -> None:
    from bert_core import MemoryOptions
    from bert_core.training import build_memories

    result = trained.result
    memories = build_memories(trained.train, trained.label_names, MemoryOptions(min_df=1, max_df=1.0))
    assert set(memories) == {"topic"}
    out = tmp_path / "with-memory"
    save_model_dir(
        out, result.model, result.tokenizer, result.model_config, metrics={}, data_hash="x", memories=memories
    )
    assert {"memory-topic.safetensors", "memory-topic.json"} <= set(verify_model_dir(out).files)
    loaded = load_model_dir(out)
    assert set(loaded.memories) == {"topic"}
    texts = [*trained.dev["topic"].texts[:6], "zebra quartet xylophone"]
    head = predict_proba(
        loaded.model,
        tokenize(loaded.tokenizer, texts, loaded.config.max_length),
        int(loaded.tokenizer.pad_token_id),
    )["topic"]
    votes = memories["topic"].votes(texts)
    assert votes[:6].any() and not votes[6].any()
    served = Predictor(loaded).predict(texts)
    for prediction, p, v in zip(served, head, votes, strict=True):
        mixed = 0.6 * p + 0.4 * v if v.any() else p
        assert prediction.topic == loaded.config.labels["topic"][int(mixed.argmax())]
        assert prediction.topic_score == pytest.approx(float(mixed.max()), abs=1e-5)
    # the same weights without the memory files serve the head alone
    plain = tmp_path / "plain"
    save_model_dir(plain, result.model, result.tokenizer, result.model_config, metrics={}, data_hash="x")
    assert load_model_dir(plain).memories == {}
    for prediction, p in zip(Predictor(load_model_dir(plain)).predict(texts), head, strict=True):
        assert prediction.topic_score == pytest.approx(float(p.max()), abs=1e-5)
