"""FGM adversarial training (bert_core.adversarial) on the tiny random BERT."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from bert_core import MultiTaskClassifier, load_encoder
from bert_core.adversarial import FGM
from bert_core.batching import collate, tokenize

TEXTS = ["stocks rally on strong earnings", "shares plunge after weak guidance", "market flat"]


LossFn = Callable[[], torch.Tensor]


def _model_and_loss(tiny_bert_dir: Path, *, frozen: bool) -> tuple[MultiTaskClassifier, nn.Embedding, LossFn]:
    torch.manual_seed(0)
    encoder, tokenizer, _ = load_encoder(str(tiny_bert_dir))
    model = MultiTaskClassifier(encoder, {"sentiment": ["negative", "neutral", "positive"]}, dropout=0.0)
    embedding = model.encoder.get_input_embeddings()
    assert isinstance(embedding, nn.Embedding)
    embedding.weight.requires_grad_(not frozen)
    tokens = tokenize(tokenizer, TEXTS, 16)
    batch = collate(tokens, [0, 1, 2], int(tokenizer.pad_token_id), [2, 0, 1])

    def loss_fn() -> torch.Tensor:
        logits = model(batch.input_ids, batch.attention_mask, tasks=["sentiment"])["sentiment"]
        assert batch.labels is not None
        return nn.functional.cross_entropy(logits, batch.labels)

    return model, embedding, loss_fn


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None and "word_emb" not in n
    }


@pytest.mark.parametrize("frozen", [True, False])
def test_fgm_restores_the_embeddings_and_adds_a_finite_adversarial_gradient(
    tiny_bert_dir: Path, frozen: bool
) -> None:
    model, embedding, loss_fn = _model_and_loss(tiny_bert_dir, frozen=frozen)
    fgm = FGM(embedding, epsilon=1.0)
    before = embedding.weight.detach().clone()
    clean = loss_fn()
    clean.backward()
    clean_grads = _grads(model)
    clean_embedding_grad = embedding.weight.grad.clone()  # type: ignore[union-attr]

    adversarial = fgm.adversarial_step(loss_fn)

    assert adversarial is not None and math.isfinite(adversarial)
    # the attack raises the loss: it moves along the gradient
    assert adversarial > float(clean.detach())
    torch.testing.assert_close(embedding.weight.detach(), before, rtol=0, atol=0)
    after = _grads(model)
    assert set(after) == set(clean_grads)
    assert any(not torch.equal(after[n], clean_grads[n]) for n in after)  # the second pass added to them
    if frozen:
        assert embedding.weight.grad is None
        fgm.release()
        assert not embedding.weight.requires_grad
    else:  # a trainable matrix keeps its own gradient, plus the attacked pass's
        assert embedding.weight.grad is not None
        assert not torch.equal(embedding.weight.grad, clean_embedding_grad)
        fgm.release()
        assert embedding.weight.requires_grad


def test_fgm_without_a_gradient_does_no_extra_pass(tiny_bert_dir: Path) -> None:
    _, embedding, loss_fn = _model_and_loss(tiny_bert_dir, frozen=True)
    fgm = FGM(embedding, epsilon=1.0)
    calls = []

    def counted() -> torch.Tensor:
        calls.append(1)
        return loss_fn()

    assert fgm.adversarial_step(counted) is None  # no backward yet: no gradient
    embedding.weight.grad = torch.zeros_like(embedding.weight)
    assert fgm.adversarial_step(counted) is None
    assert calls == []


def test_fgm_needs_a_positive_epsilon(tiny_bert_dir: Path) -> None:
    _, embedding, _ = _model_and_loss(tiny_bert_dir, frozen=True)
    with pytest.raises(ValueError, match="epsilon"):
        FGM(embedding, epsilon=0.0)
