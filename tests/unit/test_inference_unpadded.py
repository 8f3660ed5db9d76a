"""Unpadded inference (bert_core.inference.unpadded) computes what the padded Hugging Face forward does."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

from bert_core.batching import token_budget_batches
from bert_core.config import Pooling
from bert_core.inference import unpadded
from bert_core.inference.linear_layers import quantize_linears
from bert_core.inference.passes import predict_proba
from bert_core.model import MultiTaskClassifier

LABELS = {"sentiment": ["bearish", "bullish", "neutral"], "topic": [f"t{i}" for i in range(7)]}


def tiny_classifier(pooling: Pooling = "mean") -> MultiTaskClassifier:
    torch.manual_seed(3)
    config = BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=96,
    )
    model = MultiTaskClassifier(BertModel(config), LABELS, pooling=pooling)
    for head in model.heads.values():  # heads start near zero: make the outputs informative
        nn.init.normal_(head.weight, std=0.5)
    return model.eval()


def token_lists(n: int, seed: int = 0, longest: int = 80) -> list[list[int]]:
    rng = random.Random(seed)
    # [CLS] alone, very short, and up to `longest` tokens, in no particular order
    return [[2] + [rng.randrange(5, 120) for _ in range(rng.randrange(0, longest))] for _ in range(n)]


def test_pack_lays_texts_end_to_end() -> None:
    batch = unpadded.pack([[7, 8, 9], [4], [5, 6]], [2, 0, 1])
    assert batch.token_ids.tolist() == [5, 6, 7, 8, 9, 4]
    assert batch.positions.tolist() == [0, 1, 0, 1, 2, 0]
    assert batch.text_index.tolist() == [0, 0, 1, 1, 1, 2]
    assert batch.lengths.tolist() == [2, 3, 1]
    assert batch.starts.tolist() == [0, 2, 5]
    assert batch.rows == unpadded.CHUNK_ROWS  # all three fit one attention chunk
    assert batch.slots.tolist() == [0, 1, 2, 3, 4, 5]
    assert batch.segment.tolist() == [0, 0, 1, 1, 1, 2] + [-1] * (unpadded.CHUNK_ROWS - 6)


def test_pack_starts_a_new_chunk_for_a_text_that_does_not_fit() -> None:
    texts = [[1] * 10, [2] * 7, [3] * 16, [4]]
    batch = unpadded.pack(texts, [0, 1, 2, 3], chunk_rows=16)
    assert batch.rows == 16
    # 10 + 7 > 16: the second text opens chunk 1; the third fills chunk 2; the fourth, chunk 3
    assert batch.slots.tolist() == [*range(10), *range(16, 23), *range(32, 48), 48]
    assert batch.segment.view(-1, 16)[:, 0].tolist() == [0, 1, 2, 3]


def test_pack_rounds_chunks_up_for_a_text_longer_than_the_chunk() -> None:
    batch = unpadded.pack([[1] * 20, [2] * 3], [0, 1], chunk_rows=16)
    assert batch.rows == 32 and batch.slots.tolist() == [*range(23)]


def test_attention_mask_keeps_each_text_to_itself() -> None:
    batch = unpadded.pack([[1, 1], [2, 2, 2]], [0, 1], chunk_rows=16)
    mask = unpadded._attention_mask(batch)[0, 0]
    assert mask.shape == (16, 16)
    assert mask[:2, :2].all() and not mask[:2, 2:].any()  # text 0 sees itself only
    assert mask[2:5, 2:5].all() and not mask[2:5, :2].any() and not mask[2:5, 5:].any()
    assert mask[5:].all()  # padding rows see everything: no all-masked row, output discarded


def test_pack_refuses_an_empty_text() -> None:
    with pytest.raises(ValueError, match="one token per text"):
        unpadded.pack([[1, 2], []], [0, 1])


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_unpadded_matches_padded_in_fp32(pooling: Pooling) -> None:
    model = tiny_classifier(pooling)
    tokens = token_lists(150)
    padded = predict_proba(model, tokens, 0, batch_size=16, unpadded=False)
    unpadded_probs = predict_proba(model, tokens, 0, unpadded=True, tokens_per_pass=300)
    for task in LABELS:
        assert padded[task].shape == unpadded_probs[task].shape == (150, len(LABELS[task]))
        np.testing.assert_allclose(unpadded_probs[task], padded[task], atol=1e-5)
        assert padded[task].std() > 0.01  # the comparison is not between near-constant outputs


def test_unpadded_matches_padded_in_bf16_and_int8() -> None:
    model = tiny_classifier()
    tokens = token_lists(60, seed=1)
    for task, values in predict_proba(model, tokens, 0, bf16=True, unpadded=True).items():
        reference = predict_proba(model, tokens, 0, bf16=True, unpadded=False)[task]
        np.testing.assert_allclose(values, reference, atol=2e-2)
    quantised = copy.deepcopy(model)
    quantize_linears(quantised.encoder)
    assert type(quantised.encoder.encoder.layer[0].attention.self.query) is not nn.Linear
    padded = predict_proba(quantised, tokens, 0, unpadded=False)
    unpadded_probs = predict_proba(quantised, tokens, 0, unpadded=True)
    for task in LABELS:  # int8 scales per row: the layout changes float rounding only
        np.testing.assert_allclose(unpadded_probs[task], padded[task], atol=1e-5)


def test_fused_qkv_computes_the_three_projections() -> None:
    model = tiny_classifier()
    tokens = token_lists(40, seed=4)
    reference = predict_proba(model, tokens, 0, unpadded=True)
    unpadded.add_fused_qkv(model.encoder)
    fused = predict_proba(model, tokens, 0, unpadded=True)
    for task in LABELS:
        np.testing.assert_allclose(fused[task], reference[task], atol=1e-6)


def test_fused_qkv_under_int8_equals_three_quantised_projections() -> None:
    """Per-channel weight scales and one scale per input row, shared by the three: stacking
    the layers before quantising changes nothing, so the fused layer is the same int8 model."""
    model = tiny_classifier()
    tokens = token_lists(40, seed=5)
    separate = copy.deepcopy(model)
    quantize_linears(separate.encoder)
    reference = predict_proba(separate, tokens, 0, unpadded=True)
    unpadded.add_fused_qkv(model.encoder)
    quantize_linears(model.encoder)
    assert type(model.encoder.encoder.layer[0].attention.self.fused_qkv) is not nn.Linear  # quantised
    out = predict_proba(model, tokens, 0, unpadded=True)
    for task in LABELS:
        np.testing.assert_allclose(out[task], reference[task], atol=1e-5)


def test_default_path_is_unpadded_for_bert_and_padded_for_other_encoders() -> None:
    model = tiny_classifier()
    assert unpadded.supports(model.encoder)
    tokens = token_lists(20, seed=2)
    np.testing.assert_array_equal(
        predict_proba(model, tokens, 0)["topic"], predict_proba(model, tokens, 0, unpadded=True)["topic"]
    )
    distil = DistilBertModel(
        DistilBertConfig(
            vocab_size=120, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=96
        )
    )
    other = MultiTaskClassifier(distil, LABELS).eval()
    assert not unpadded.supports(other.encoder)
    out = predict_proba(other, tokens, 0)  # falls back to padded batches, no error
    assert out["sentiment"].shape == (20, 3)
    with pytest.raises(ValueError, match="BERT encoders only"):
        predict_proba(other, tokens, 0, unpadded=True)


def test_token_budget_batches_cover_each_text_once_within_the_budget() -> None:
    lengths = [5, 40, 12, 3, 70, 12, 9, 33]
    batches = token_budget_batches(lengths, 50)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert sum(lengths[i] for i in b) <= 50 or len(b) == 1  # 70 > 50 rides alone
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)  # length order keeps attention padding small
    assert token_budget_batches([], 50) == []


@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_split_by_tokens_gives_balanced_runs_covering_each_text_once(parts: int) -> None:
    from bert_core.batching import split_by_tokens

    rng = random.Random(parts)
    lengths = [rng.randrange(5, 40) for _ in range(50)]
    runs = split_by_tokens(lengths, parts)
    assert len(runs) == parts
    assert sorted(i for r in runs for i in r) == list(range(len(lengths)))
    sums = [sum(lengths[i] for i in r) for r in runs]
    assert max(sums) - min(sums) <= 2 * max(lengths)  # about equal work per thread
    flat = [lengths[i] for r in runs for i in r]
    assert flat == sorted(flat)


def test_split_by_tokens_never_makes_more_runs_than_texts() -> None:
    from bert_core.batching import split_by_tokens

    assert split_by_tokens([7], 2) == [[0]]
    assert sorted(map(len, split_by_tokens([60, 3], 2))) == [1, 1]
    assert split_by_tokens([], 2) == []
