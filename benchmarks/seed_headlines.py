"""The packaged seed headlines as the alert benchmarks stream them (alert_detector.py on true
labels, alert_calibration.py on a model's labels): each headline's text, true sentiment and
cashtag tickers, the topic file's label mix, and the stream item the detector consumes.

One loader so both benchmarks draw from the same rows in the same order, and a labels file
made by label_seed_headlines.py is checked against those rows before it is trusted.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from bert_core import TOPIC_LABELS, packaged_seed_data
from services.schemas import extract_tickers

SEED_FILES = packaged_seed_data()
SENTIMENT_NAMES = {0: "bearish", 1: "bullish", 2: "neutral"}  # the seed file's class ids


@dataclass(frozen=True, slots=True)
class Item:
    """A scored story as the detector sees it: labels and times, no text."""

    event_id: str
    published_at: datetime
    topic: str
    sentiment: str
    sentiment_score: float
    tickers: tuple[str, ...]


@dataclass(frozen=True)
class SeedHeadlines:
    texts: list[str]
    truth: list[str]  # the data file's sentiment per headline
    tickers: list[tuple[str, ...]]
    topic_p: np.ndarray  # share of each TOPIC_LABELS class in topic_train.csv

    @property
    def path(self) -> Path:
        return SEED_FILES["sentiment"]

    def ticker_mentions(self) -> Counter[str]:
        return Counter(t for ts in self.tickers for t in ts)


def load_seed_headlines() -> SeedHeadlines:
    with SEED_FILES["sentiment"].open(newline="", encoding="utf-8") as f:
        rows = [(r["text"], SENTIMENT_NAMES[int(r["label"])]) for r in csv.DictReader(f)]
    with SEED_FILES["topic"].open(newline="", encoding="utf-8") as f:
        counts = Counter(int(r["label"]) for r in csv.DictReader(f))
    total = sum(counts.values())
    return SeedHeadlines(
        texts=[t for t, _ in rows],
        truth=[s for _, s in rows],
        tickers=[tuple(extract_tickers(t)) for t, _ in rows],
        topic_p=np.array([counts[i] / total for i in range(len(TOPIC_LABELS))]),
    )


def load_model_labels(path: Path, headlines: SeedHeadlines) -> list[str]:
    """The model's label per seed headline from a label_seed_headlines.py CSV; exits with one
    line if the file was made from other rows (an older seed file)."""
    with path.open(newline="", encoding="utf-8") as f:
        predicted = list(csv.DictReader(f))
    if len(predicted) != len(headlines.truth) or any(
        int(p["row"]) != i or p["label"] != s
        for i, (p, s) in enumerate(zip(predicted, headlines.truth, strict=True))
    ):
        raise SystemExit(f"{path} does not match {headlines.path}: label it again")
    return [p["predicted"] for p in predicted]
