"""LoRA retraining (bert_core.lora) on the tiny random BERT: what trains, what is merged, and
that a merged model is an ordinary model directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TrainedModel
from safetensors import safe_open
from torch import nn

from bert_core import (
    WEIGHTS_FILE,
    LoraOptions,
    ModelConfigError,
    MultiTaskClassifier,
    Predictor,
    TrainConfig,
    add_lora,
    fine_tune,
    load_model_dir,
    merge_lora,
    save_adapter,
    save_result,
)
from bert_core.batching import collate, tokenize
from bert_core.inference.passes import predict_proba

TINY_TARGETS = LoraOptions(rank=4, alpha=8, dropout=0.0)


def _lora_config(trained: TrainedModel, init_from: Path | None = None, **changes: object) -> TrainConfig:
    base = dataclasses.replace(
        trained.config,
        method="lora",
        lora=TINY_TARGETS,
        epochs=6,
        learning_rate=1e-2,
        head_learning_rate=3e-3,
    )
    if init_from is not None:
        base = dataclasses.replace(base, init_from=str(init_from), base_model=None)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _batch_loss(model: MultiTaskClassifier, tokenizer, trained: TrainedModel, task: str) -> torch.Tensor:
    data = trained.train[task]
    tokens = tokenize(tokenizer, data.texts, 64)
    batch = collate(tokens, list(range(len(tokens))), int(tokenizer.pad_token_id), data.labels)
    logits = model(batch.input_ids, batch.attention_mask, tasks=[task])[task]
    return nn.functional.cross_entropy(logits, batch.labels)


def test_lora_steps_change_only_adapters_and_heads_and_the_loss_falls(
    saved_model_dir: Path, trained: TrainedModel
) -> None:
    loaded = load_model_dir(saved_model_dir)
    model = loaded.model
    # Damaged heads, so there is something to learn from a trained encoder.
    for head in model.heads.values():
        assert isinstance(head, nn.Linear)
        nn.init.normal_(head.weight, std=0.02)
    trainable = add_lora(model, TINY_TARGETS)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n or n.startswith("heads.") for n in names)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in names)
    assert any("attention.self.query" in n for n in names) and any("intermediate.dense" in n for n in names)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if n not in names}
    adapters_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(30):
        loss = _batch_loss(model, loaded.tokenizer, trained, "sentiment")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    for name, before in frozen_before.items():
        assert torch.equal(dict(model.named_parameters())[name], before), f"{name} moved"
    moved = [
        n
        for n, before in adapters_before.items()
        if not torch.equal(dict(model.named_parameters())[n], before)
    ]
    assert any("lora_B" in n for n in moved), "no adapter learnt anything"


def test_merge_gives_the_unmerged_outputs_with_plain_linears(
    saved_model_dir: Path, trained: TrainedModel
) -> None:
    loaded = load_model_dir(saved_model_dir)
    model = loaded.model
    keys_before = set(model.state_dict())
    add_lora(model, TINY_TARGETS)
    torch.manual_seed(3)
    with torch.no_grad():  # B starts at 0 (a no-op): give every adapter a real update
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
    model.eval()
    data = trained.dev["sentiment"]
    tokens = tokenize(loaded.tokenizer, data.texts, 64)
    batch = collate(tokens, list(range(len(tokens))), int(loaded.tokenizer.pad_token_id))
    with torch.no_grad():
        unmerged = model(batch.input_ids, batch.attention_mask)
        before_lora = load_model_dir(saved_model_dir).model(batch.input_ids, batch.attention_mask)
    assert not torch.allclose(unmerged["sentiment"], before_lora["sentiment"], atol=1e-3)
    assert merge_lora(model) == 2 * 6  # 2 layers x (query, key, value, 2 x output.dense, intermediate)
    model.eval()
    with torch.no_grad():
        merged = model(batch.input_ids, batch.attention_mask)
    for task in merged:
        torch.testing.assert_close(merged[task], unmerged[task], atol=1e-5, rtol=1e-4)
    assert set(model.state_dict()) == keys_before
    layer = model.encoder.encoder.layer[0]
    assert type(layer.attention.self.query) is nn.Linear and type(layer.output.dense) is nn.Linear


def test_lora_fine_tune_moves_only_the_targeted_weights_and_serves_as_a_plain_directory(
    saved_model_dir: Path, trained: TrainedModel, tmp_path: Path
) -> None:
    start = load_model_dir(saved_model_dir).model.state_dict()
    result = fine_tune(
        trained.train, trained.dev, trained.label_names, _lora_config(trained, saved_model_dir)
    )
    assert result.model_config.training["method"] == "lora"
    assert result.model_config.training["lora"]["rank"] == TINY_TARGETS.rank
    assert result.adapter is not None and result.adapter
    assert all("lora_" in k or k.startswith("heads.") for k in result.adapter)
    merged = result.model.state_dict()
    assert set(merged) == set(start)
    targeted = ("query.weight", "key.weight", "value.weight", "dense.weight")
    changed = {k for k in start if k.startswith("encoder.") and not torch.equal(merged[k], start[k])}
    assert changed, "LoRA training left the encoder unchanged"
    assert all(k.endswith(targeted) for k in changed), sorted(changed)
    assert not any(
        "pooler" in k or "embeddings" in k or "LayerNorm" in k or k.endswith(".bias") for k in changed
    )

    out = tmp_path / "lora-model"
    manifest = save_result(result, out, trained.train)
    assert manifest.parent == load_model_dir(saved_model_dir).manifest.version
    loaded = load_model_dir(out)  # strict load: plain keys, sha256-verified
    texts = trained.dev["sentiment"].texts
    tokens = tokenize(loaded.tokenizer, texts, 64)
    expected = predict_proba(result.model, tokens, int(loaded.tokenizer.pad_token_id), tasks=["sentiment"])
    served = Predictor.load(out, precision="fp32").predict(texts)
    names = loaded.config.labels["sentiment"]
    got = np.array([[p.sentiment_probs[n] for n in names] for p in served])
    np.testing.assert_allclose(got, expected["sentiment"], atol=1e-4)

    adapter_file = tmp_path / "delta.safetensors"
    size = save_adapter(adapter_file, result.adapter, base_version=manifest.parent)
    assert size < (out / WEIGHTS_FILE).stat().st_size / 3
    with safe_open(str(adapter_file), framework="pt") as fh:
        assert fh.metadata()["base_version"] == manifest.parent
        assert set(fh.keys()) == set(result.adapter)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lora": LoraOptions(rank=0)}, "rank"),
        ({"lora": LoraOptions(target_modules=("no_such_layer",))}, "LoRA"),
        ({"lora": LoraOptions(target_modules=())}, "target"),
        ({"method": "adapters"}, "full or lora"),
    ],
)
def test_bad_lora_settings_are_one_clear_error(
    saved_model_dir: Path, trained: TrainedModel, changes: dict[str, object], message: str
) -> None:
    config = _lora_config(trained, saved_model_dir, **changes)
    with pytest.raises(ModelConfigError, match=message):
        fine_tune(trained.train, trained.dev, trained.label_names, config)
