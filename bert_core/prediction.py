"""One text's labels, as the scorer stores and publishes them.

Torch-free on purpose: the scorer's batch and publish code, and every service that reads
predictions, import this without loading torch (the predictor that produces it lives in
`bert_core.inference`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """One text's labels. sentiment_score = P(bullish) - P(bearish), in [-1, 1]."""

    topic: str
    topic_score: float
    sentiment: str
    sentiment_probs: dict[str, float]
    sentiment_score: float
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
