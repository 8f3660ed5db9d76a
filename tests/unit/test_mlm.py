"""BERT masking statistics and MLM domain pre-training on the tiny encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import bert_core.mlm as mlm_module
from bert_core import DataError, MlmConfig, ModelIntegrityError, load_encoder, mask_tokens, pretrain_mlm
from bert_core.mlm import IGNORE_INDEX

VOCAB_SIZE = 1000
MASK_ID = 4
SPECIAL_IDS = (0, 1, 2, 3, 4)


@pytest.fixture(scope="module")
def masked() -> dict[str, torch.Tensor]:
    """200 x 500 = 100k tokens: [CLS] first, a random tail of [PAD], ordinary ids in between."""
    gen = torch.Generator().manual_seed(123)
    ids = torch.randint(5, VOCAB_SIZE, (200, 500), generator=gen)
    ids[:, 0] = 2
    lengths = torch.randint(250, 500, (200,), generator=gen)
    for row, length in enumerate(lengths.tolist()):
        ids[row, length - 1] = 3
        ids[row, length:] = 0
    special = torch.isin(ids, torch.tensor(SPECIAL_IDS))
    inputs, labels = mask_tokens(
        ids,
        special,
        mask_token_id=MASK_ID,
        vocab_size=VOCAB_SIZE,
        generator=torch.Generator().manual_seed(0),
    )
    return {"ids": ids, "special": special, "inputs": inputs, "labels": labels}


def test_about_15_percent_of_real_tokens_are_selected(masked: dict[str, torch.Tensor]) -> None:
    selected = masked["labels"] != IGNORE_INDEX
    real = ~masked["special"]
    share = selected[real].float().mean().item()
    # ~75k real tokens: the standard error of the share is ~0.0013.
    assert share == pytest.approx(0.15, abs=0.01)


def test_special_tokens_are_never_selected_or_changed(masked: dict[str, torch.Tensor]) -> None:
    special = masked["special"]
    assert special.sum() > 10_000  # the fixture really has padding and [CLS]/[SEP]
    assert (masked["labels"][special] == IGNORE_INDEX).all()
    assert torch.equal(masked["inputs"][special], masked["ids"][special])


def test_labels_are_original_ids_on_the_selection_only(masked: dict[str, torch.Tensor]) -> None:
    labels, ids = masked["labels"], masked["ids"]
    selected = labels != IGNORE_INDEX
    assert torch.equal(labels[selected], ids[selected])
    assert ((labels == IGNORE_INDEX) == ~selected).all()
    # Unselected tokens are left exactly as they were.
    assert torch.equal(masked["inputs"][~selected], ids[~selected])


def test_80_10_10_split_of_the_selection(masked: dict[str, torch.Tensor]) -> None:
    selected = masked["labels"] != IGNORE_INDEX
    inputs, ids = masked["inputs"][selected], masked["ids"][selected]
    n = selected.sum().item()
    assert n > 10_000
    to_mask = (inputs == MASK_ID).float().mean().item()
    kept = (inputs == ids).float().mean().item()
    random_other = ((inputs != MASK_ID) & (inputs != ids)).float().mean().item()
    # ~11k selected tokens: standard errors ~0.004 (80%) and ~0.003 (10%).
    assert to_mask == pytest.approx(0.80, abs=0.02)
    assert kept == pytest.approx(0.10, abs=0.015)
    assert random_other == pytest.approx(0.10, abs=0.015)
    # Random replacements are drawn from the whole vocabulary.
    replaced = inputs[(inputs != MASK_ID) & (inputs != ids)]
    assert replaced.min() >= 0
    assert replaced.max() < VOCAB_SIZE
    assert len(replaced.unique()) > 500


def test_masking_is_reproducible_with_the_generator(masked: dict[str, torch.Tensor]) -> None:
    again = mask_tokens(
        masked["ids"],
        masked["special"],
        mask_token_id=MASK_ID,
        vocab_size=VOCAB_SIZE,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(again[0], masked["inputs"])
    assert torch.equal(again[1], masked["labels"])


def test_mlm_probability_is_respected() -> None:
    ids = torch.randint(5, VOCAB_SIZE, (100, 400), generator=torch.Generator().manual_seed(1))
    _, labels = mask_tokens(
        ids,
        torch.zeros_like(ids, dtype=torch.bool),
        mask_token_id=MASK_ID,
        vocab_size=VOCAB_SIZE,
        generator=torch.Generator().manual_seed(2),
        mlm_probability=0.4,
    )
    assert (labels != IGNORE_INDEX).float().mean().item() == pytest.approx(0.4, abs=0.01)


# ------------------------------------------------------------------ pre-training


@pytest.fixture(scope="module")
def mlm_run(
    tiny_bert_dir: Path, mlm_texts: list[str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One short MLM run; records which rows each forward pass saw (eval runs in inference mode)."""
    out = tmp_path_factory.mktemp("mlm") / "encoder"
    calls: list[tuple[bool, list[int]]] = []
    real_collate = mlm_module.collate

    def spy(token_ids, indices, pad_id, labels=None):
        calls.append((torch.is_inference_mode_enabled(), list(indices)))
        return real_collate(token_ids, indices, pad_id, labels)

    config = MlmConfig(
        base_model=str(tiny_bert_dir), epochs=3, batch_size=8, learning_rate=3e-3, progress=False, seed=0
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mlm_module, "collate", spy)
        summary = pretrain_mlm(mlm_texts, out, config)
    return {"summary": summary, "out": out, "calls": calls, "n_texts": len(mlm_texts)}


def test_pretrain_mlm_lowers_heldout_loss(mlm_run: dict[str, Any]) -> None:
    summary = mlm_run["summary"]
    before, after = summary["heldout_mlm_loss_before"], summary["heldout_mlm_loss_after"]
    # An untrained head is close to uniform over the 278-word vocabulary: loss ~ ln(278) = 5.63.
    assert before == pytest.approx(5.63, abs=0.3)
    assert after < before - 0.3
    assert summary["texts"] == mlm_run["n_texts"]
    # 90 training rows (10 held out) in batches of 8, for 3 epochs.
    assert summary["steps"] == 3 * 12


def test_heldout_rows_are_never_trained_on(mlm_run: dict[str, Any]) -> None:
    evaluated = {i for in_eval, idx in mlm_run["calls"] if in_eval for i in idx}
    trained = {i for in_eval, idx in mlm_run["calls"] if not in_eval for i in idx}
    assert len(evaluated) == mlm_run["n_texts"] // 10
    assert evaluated.isdisjoint(trained)
    assert evaluated | trained == set(range(mlm_run["n_texts"]))


def test_pretrained_encoder_loads_as_a_base_model(mlm_run: dict[str, Any], tiny_bert_dir: Path) -> None:
    out: Path = mlm_run["out"]
    encoder, tokenizer, name = load_encoder(out)
    assert name == str(out.resolve())
    assert encoder.config.hidden_size == 32
    assert len(tokenizer) == len(load_encoder(tiny_bert_dir)[1])
    saved = json.loads((out / "mlm_summary.json").read_text())
    assert saved["heldout_mlm_loss_after"] == mlm_run["summary"]["heldout_mlm_loss_after"]
    # The encoder weights changed: MLM actually trained them.
    original, _, _ = load_encoder(tiny_bert_dir)
    emb_new = encoder.embeddings.word_embeddings.weight
    emb_old = original.embeddings.word_embeddings.weight
    assert not torch.allclose(emb_new, emb_old)


def test_pretrain_mlm_needs_two_texts(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least two"):
        pretrain_mlm(["", "only one"], tmp_path / "x", MlmConfig(base_model=str(tiny_bert_dir)))


@pytest.mark.parametrize("case", ["not empty", "a file", "under a file"])
def test_pretrain_mlm_refuses_an_out_it_cannot_save_to_before_loading_anything(
    tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch, unusable_out_dirs, case: str
) -> None:
    out, message = unusable_out_dirs.cases[case]

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder was loaded before the output path was checked")

    monkeypatch.setattr(mlm_module, "load_encoder", no_loading)
    with pytest.raises(ModelIntegrityError) as caught:
        pretrain_mlm(["one text", "another text"], out, MlmConfig(base_model=str(tiny_bert_dir)))
    assert str(caught.value).startswith(message)
    assert unusable_out_dirs.untouched()


def test_pretrain_mlm_takes_an_empty_out_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    class Loaded(Exception):
        pass

    def loaded(*args: object, **kwargs: object) -> None:
        raise Loaded

    monkeypatch.setattr(mlm_module, "load_encoder", loaded)
    with pytest.raises(Loaded):  # past the checks
        pretrain_mlm(["one text", "another text"], empty, MlmConfig())
