"""Unpadded ("packed") BERT inference: the dense layers see real tokens only.

Why: headlines run from 5 to 64 tokens (19.4 on average in the seed data). A padded forward
pass computes every row up to the longest text in it, and the streaming scorer's
micro-batches are small: padding to the longest wastes 5 % of the compute at 1,024 texts
per call, 16 % at 256, 45 % at 64 and 65 % at 16 (measured on the seed headlines, batches
of 32 in length order). Here every dense layer and LayerNorm - 97 % of the arithmetic at
these lengths - runs on one `(tokens, hidden)` matrix holding the batch's real tokens back
to back; only the attention scores are computed on a padded layout of chunks (several short
texts per chunk, masked from each other), scattered to and gathered from the packed rows.

Same weights and same operations as the Hugging Face `BertModel` forward in eval mode (the
equivalence is tested to float tolerance), so no model format or training change: it is
chosen at inference time for encoders it `supports`; anything else takes the padded path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel
from transformers.models.bert.modeling_bert import BertSelfAttention

from bert_core.config import Pooling

# Attention runs on a padded layout of chunks: consecutive texts share a chunk of
# `CHUNK_ROWS` rows (a block-diagonal mask keeps each text to itself), and a chunk's row count
# is a multiple of `ATTENTION_ROWS`. torch's CPU attention kernel runs sequence lengths that
# are multiples of 16 two to three times faster than their neighbours (an AMX Xeon, one
# thread, 64 texts x 12 heads: 31 rows 4.4 ms, 32 rows 1.8 ms; 47 rows 7.2 ms, 48 rows
# 3.7 ms; bf16 and fp32 alike), and a few long sequences beat many short ones: 85 texts
# padded to 48 rows took 5.0 ms, the same tokens as 28 chunks of 64 rows 2.0 ms
# (docs/performance.md#unpadded-passes).
ATTENTION_ROWS = 16
CHUNK_ROWS = 64


def supports(encoder: nn.Module) -> bool:
    """True for encoders whose forward this module reproduces: BERT-family `BertModel`s
    with absolute position embeddings, used as an encoder (not a decoder)."""
    config = getattr(encoder, "config", None)
    return (
        type(encoder).__name__ == "BertModel"
        and config is not None
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not getattr(config, "is_decoder", False)
        and not getattr(config, "add_cross_attention", False)
    )


@dataclass(frozen=True)
class PackedBatch:
    """A batch of token sequences laid end to end.

    `token_ids`, `positions` and `slots` have one entry per real token; `slots` is the
    token's row in the padded `(chunks * rows)` layout used only inside attention, where
    texts lie end to end in chunks of `rows` rows (no text split across chunks) and
    `segment` says which text each of those rows holds (-1: padding).
    """

    token_ids: torch.Tensor  # (tokens,) long
    positions: torch.Tensor  # (tokens,) long: position within its text
    text_index: torch.Tensor  # (tokens,) long: which text of the batch
    slots: torch.Tensor  # (tokens,) long: the token's row in the chunked attention layout
    lengths: torch.Tensor  # (texts,) long
    starts: torch.Tensor  # (texts,) long: first token of each text (its [CLS])
    segment: torch.Tensor  # (chunks * rows,) long: the text in each attention row, or -1
    rows: int

    @property
    def size(self) -> int:
        return int(self.lengths.numel())


def pack(
    token_ids: Sequence[Sequence[int]], indices: Sequence[int], *, chunk_rows: int = CHUNK_ROWS
) -> PackedBatch:
    """Pack the selected texts' token ids (each must hold at least one token); attention
    chunks hold `chunk_rows` rows, or the longest text rounded up to `ATTENTION_ROWS`."""
    lengths = torch.tensor([len(token_ids[i]) for i in indices], dtype=torch.long)
    if lengths.numel() == 0 or int(lengths.min()) < 1:
        raise ValueError("pack needs at least one text and one token per text")
    rows = max(chunk_rows, -(-int(lengths.max()) // ATTENTION_ROWS) * ATTENTION_ROWS)
    first_row = []  # each text's first row in the chunked layout, filled greedily in order
    chunk, used = 0, 0
    for length in lengths.tolist():
        if used + length > rows:
            chunk, used = chunk + 1, 0
        first_row.append(chunk * rows + used)
        used += length
    flat = torch.tensor([tok for i in indices for tok in token_ids[i]], dtype=torch.long)
    text_index = torch.repeat_interleave(torch.arange(len(indices)), lengths)
    starts = torch.cumsum(lengths, 0) - lengths
    positions = torch.arange(flat.numel()) - starts[text_index]
    slots = torch.tensor(first_row, dtype=torch.long)[text_index] + positions
    segment = torch.full(((chunk + 1) * rows,), -1, dtype=torch.long)
    segment[slots] = text_index
    return PackedBatch(
        token_ids=flat,
        positions=positions,
        text_index=text_index,
        slots=slots,
        lengths=lengths,
        starts=starts,
        segment=segment,
        rows=rows,
    )


def encode(model: nn.Module, batch: PackedBatch) -> torch.Tensor:
    """Final hidden states of every real token, `(tokens, hidden)`; eval-mode semantics
    (no dropout). Token type 0 throughout, as the classifier never passes segment ids.
    `model` must be one that `supports` accepts."""
    encoder = cast(BertModel, model)
    emb = encoder.embeddings
    hidden = (
        emb.word_embeddings(batch.token_ids)
        + emb.position_embeddings(batch.positions)
        + emb.token_type_embeddings.weight[0]
    )
    hidden = emb.LayerNorm(hidden)
    heads = int(encoder.config.num_attention_heads)
    mask = _attention_mask(batch)
    # The chunked layout for query/key/value, shared by the layers: each writes the same real
    # rows, so the padding rows stay zero and need no fresh zeroed buffer per layer.
    layout: torch.Tensor | None = None
    for layer in encoder.encoder.layer:
        attention = layer.attention
        context, layout = _attend(attention.self, hidden, batch, heads, mask, layout)
        hidden = attention.output.LayerNorm(attention.output.dense(context) + hidden)
        inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(hidden))
        hidden = layer.output.LayerNorm(layer.output.dense(inner) + hidden)
    return hidden


def add_fused_qkv(model: nn.Module) -> None:
    """Give every self-attention of a supported encoder a `fused_qkv` Linear: query, key and
    value weights stacked into one layer, which `encode` then calls instead of concatenating
    the three weights on every pass. For inference copies only (the Predictor's): training
    updates the three projections, not this copy. Created before quantisation, it is
    quantised as one layer (with per-channel weight scales that is exactly the three layers'
    quantisation) and needs no per-pass concatenation of packed int8 weights.
    """
    encoder = cast(BertModel, model)
    for layer in encoder.encoder.layer:
        attention = layer.attention.self
        projections = (attention.query, attention.key, attention.value)
        fused = nn.Linear(
            projections[0].in_features,
            sum(p.out_features for p in projections),
            dtype=projections[0].weight.dtype,
        )
        with torch.no_grad():
            fused.weight.copy_(torch.cat([p.weight for p in projections]))
            fused.bias.copy_(torch.cat([p.bias for p in projections]))
        fused.requires_grad_(False)
        attention.fused_qkv = fused


def pool(hidden: torch.Tensor, batch: PackedBatch, pooling: Pooling) -> torch.Tensor:
    """One vector per text: its [CLS] state, or the mean of its token states."""
    if pooling == "cls":
        return hidden[batch.starts]
    sums = hidden.new_zeros((batch.size, hidden.shape[1])).index_add_(0, batch.text_index, hidden)
    return sums / batch.lengths.to(sums.dtype).unsqueeze(1)


def _attention_mask(batch: PackedBatch) -> torch.Tensor:
    """`(chunks, 1, rows, rows)`, True where query and key rows hold the same text. A padding
    row attends to every key (never an all-masked row; its output is discarded)."""
    segment = batch.segment.view(-1, batch.rows)
    same_text = segment.unsqueeze(2) == segment.unsqueeze(1)
    return (same_text | (segment < 0).unsqueeze(2)).unsqueeze(1)


def _attend(
    self_attention: BertSelfAttention,
    hidden: torch.Tensor,
    batch: PackedBatch,
    heads: int,
    mask: torch.Tensor,
    layout: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention of the packed rows; returns the context rows and the chunked layout
    buffer, which the next layer may pass back in (`layout`) if it has the same shape and
    dtype."""
    projections = (self_attention.query, self_attention.key, self_attention.value)
    fused = getattr(self_attention, "fused_qkv", None)
    if fused is not None:  # the Predictor's copies (`add_fused_qkv`)
        qkv = fused(hidden)
    elif all(type(p) is nn.Linear for p in projections):
        # One matrix product for query, key and value, and one scatter into the padded layout.
        weight = torch.cat([p.weight for p in projections])
        bias = torch.cat([p.bias for p in projections])
        qkv = F.linear(hidden, weight, bias)
    else:  # e.g. int8 layers (`linear_layers.Int8Linear`), whose weights are laid out for oneDNN
        qkv = torch.cat([p(hidden) for p in projections], dim=1)
    width = qkv.shape[1] // 3
    shape = (batch.segment.numel(), 3 * width)
    if layout is None or layout.shape != shape or layout.dtype != qkv.dtype:
        layout = qkv.new_zeros(shape)
    layout[batch.slots] = qkv
    query, key, value = layout.view(-1, batch.rows, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    return context.transpose(1, 2).reshape(batch.segment.numel(), width)[batch.slots], layout
