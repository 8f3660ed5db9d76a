"""The sample feed `finsent run --demo` replays: real labelled headlines as `news.raw` items.

Pure: the caller reads the texts. Items carry no `id` and no `published_at`, so the event id
is derived from source + headline (a second demo run re-sends the same stories, which the
scorer stores once) and the publication time is when the scorer receives them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

DEMO_SOURCE = "finsent-demo"


def demo_items(texts: Sequence[str], *, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` distinct non-blank headlines from `texts`, in a seeded random order."""
    if count < 1:
        raise ValueError(f"the demo needs at least one item, got {count}")
    unique = list(dict.fromkeys(" ".join(text.split()) for text in texts))
    unique = [text for text in unique if text]
    if not unique:
        raise ValueError("no headlines to replay")
    random.Random(seed).shuffle(unique)
    return [{"headline": text, "source": DEMO_SOURCE} for text in unique[:count]]
