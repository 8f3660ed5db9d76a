"""Tokenisation, dynamic padding and length-bucketed batches.

Headlines vary from 5 to 80 tokens; padding each batch only to its own longest text,
and grouping texts of similar length, roughly halves the compute per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text with special tokens; texts longer than max_length are truncated."""
    if not texts:  # fast tokenizers raise IndexError on an empty batch
        return []
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return [list(ids) for ids in encoded["input_ids"]]


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    indices: list[int]
    labels: torch.Tensor | None = None


def collate(
    token_ids: Sequence[Sequence[int]],
    indices: Sequence[int],
    pad_id: int,
    labels: Sequence[int] | None = None,
) -> Batch:
    """Pad the selected rows to the longest among them."""
    width = max(len(token_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        seq = token_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    label_tensor = (
        torch.tensor([labels[i] for i in indices], dtype=torch.long) if labels is not None else None
    )
    return Batch(ids, mask, list(indices), label_tensor)


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, *, bucket_factor: int = 50
) -> list[list[int]]:
    """Shuffled batches of similar-length rows.

    Rows are shuffled, cut into pools of `bucket_factor` batches, sorted by length within
    a pool, batched, and the batches shuffled: near-minimal padding, still random order.
    """
    order = rng.permutation(len(lengths))
    pool = batch_size * bucket_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool].tolist(), key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Deterministic batches sorted by length, for inference and evaluation."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[j : j + batch_size] for j in range(0, len(order), batch_size)]


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Batches in length order holding at most `max_tokens` real tokens each (a text longer
    than the budget gets a batch of its own): for unpadded inference, where the cost of a
    pass follows its token count, not its text count."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order:
        if current and used + lengths[i] > max_tokens:
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        batches.append(current)
    return batches


def split_by_tokens(lengths: Sequence[int], parts: int) -> list[list[int]]:
    """The texts in length order, cut into `parts` runs of about equal token counts (fewer
    when there are fewer texts): one pass per thread for a call too small to fill the
    token budget more than once."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    parts = max(1, min(parts, len(order)))
    total = sum(lengths)
    runs: list[list[int]] = [[] for _ in range(parts)]
    used = 0
    for position, i in enumerate(order):
        remaining_texts = len(order) - position
        part = min(parts - 1, used * parts // max(total, 1))
        # every run gets at least one text: jump ahead when the texts left only just cover the runs left
        part = max(part, parts - remaining_texts)
        runs[part].append(i)
        used += lengths[i]
    return [run for run in runs if run]
