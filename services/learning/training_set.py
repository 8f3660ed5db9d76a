"""What a retraining trains on: analyst labels plus a replay sample of earlier data (pure).

Fine-tuning only on a few hundred fresh labels makes a model forget the rest of the
distribution (and over-predict whatever classes the analysts happened to correct). Mixing
in a stratified sample of the data the champion learnt from keeps the old skills; the
ratio is a setting.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence


def replay_sample(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    size: int,
    exclude: Collection[str],
    seed: int,
) -> tuple[list[str], list[int]]:
    """A stratified random sample of `size` rows (class shares as in the pool), leaving out
    `exclude` (holdout texts, and texts the analysts relabelled: their new label wins)."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if text not in exclude:
            by_class[label].append(i)
    pool = sum(len(rows) for rows in by_class.values())
    if size >= pool:
        chosen = sorted(i for rows in by_class.values() for i in rows)
    else:
        rng = random.Random(seed)
        chosen = []
        for label in sorted(by_class):
            rows = by_class[label]
            take = max(1, round(size * len(rows) / pool)) if rows else 0
            chosen.extend(rng.sample(rows, min(take, len(rows))))
        chosen.sort()
    return [texts[i] for i in chosen], [labels[i] for i in chosen]


def replay_size(n_new: int, *, ratio: float, minimum: int) -> int:
    """How many earlier rows to mix in with `n_new` analyst labels."""
    return max(minimum, round(n_new * ratio)) if n_new > 0 else minimum


def merge_rows(
    analyst: Mapping[str, int], replay_texts: Sequence[str], replay_labels: Sequence[int]
) -> tuple[list[str], list[int]]:
    """Analyst rows first, then replay rows whose text the analysts did not label."""
    texts, labels = list(analyst), list(analyst.values())
    for text, label in zip(replay_texts, replay_labels, strict=True):
        if text not in analyst:
            texts.append(text)
            labels.append(label)
    return texts, labels
