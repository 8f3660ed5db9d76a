"""The labelling queue: what an analyst's next label is worth most on.

Two sources, in this order:

1. **disagreements**: texts that analysts labelled differently for the task. Until they are
   settled, the label store holds contradicting training signal, so they come first.
2. **uncertain stories**: recent, unlabelled stories the model is least sure of (active
   learning by uncertainty sampling). For sentiment, whose three probabilities are stored,
   the key is the *margin* between the two most likely classes (small margin = the model
   nearly chose the other class), ties broken by higher entropy. For topics only the top
   probability is stored, so the key is 1 - topic_score (least confidence).

The database pre-selects candidates by the same key (ORDER BY margin LIMIT n over the
recent window, stories that already have a label for the task excluded), so the queue
costs one bounded scan of the window's predictions; `rank_uncertain` orders them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, exists, not_, select
from sqlalchemy.orm import Session

from dashboards.data.indices import TimeRange
from dashboards.data.sql import dialect_of, greatest, least
from services.storage.learning_models import LabelRow
from services.storage.models import NewsItemRow, PredictionRow

P = PredictionRow
N = NewsItemRow
L = LabelRow
Task = Literal["sentiment", "topic"]


def margin(probs: Sequence[float]) -> float:
    """Top-1 minus top-2 probability (0: a coin toss between two classes)."""
    if len(probs) < 2:
        return 1.0
    top = sorted(probs, reverse=True)
    return top[0] - top[1]


def entropy(probs: Sequence[float]) -> float:
    """Shannon entropy in nats of a probability vector (zeros contribute nothing)."""
    return -sum(p * math.log(p) for p in probs if p > 0)


@dataclass(frozen=True, slots=True)
class QueueItem:
    kind: Literal["disagreement", "uncertain"]
    task: Task
    text: str
    event_id: str | None
    model_label: str | None = None  # what the model said
    probabilities: tuple[tuple[str, float], ...] = ()  # (class, p), as stored
    sureness: float = 1.0  # margin (sentiment) or top probability (topic): low = unsure
    entropy: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()  # (labeller, label) already given

    @property
    def identity(self) -> str:
        """Session-level key for "done or skipped": the story, or the text for imported labels."""
        return self.event_id or f"text:{self.text}"


def rank_uncertain(items: Iterable[QueueItem]) -> list[QueueItem]:
    """Least sure first: smallest margin (or top probability), then highest entropy."""
    return sorted(items, key=lambda i: (i.sureness, -i.entropy, i.event_id or ""))


def build_queue(
    disagreements: Sequence[QueueItem], uncertain: Sequence[QueueItem], *, done: Iterable[str] = ()
) -> list[QueueItem]:
    """Disagreements, then uncertain stories ranked; items done or skipped this session left out."""
    seen = set(done)
    queue: list[QueueItem] = []
    for item in [*disagreements, *rank_uncertain(uncertain)]:
        if item.identity not in seen:
            seen.add(item.identity)
            queue.append(item)
    return queue


def uncertain_stories(session: Session, *, task: Task, period: TimeRange, limit: int = 50) -> list[QueueItem]:
    dialect = dialect_of(session)
    if task == "sentiment":
        hi = greatest(dialect, P.p_bearish, P.p_neutral, P.p_bullish)
        lo = least(dialect, P.p_bearish, P.p_neutral, P.p_bullish)
        # top-2 margin of three probabilities summing to 1: max - middle = 2*max + min - 1
        key: ColumnElement[float] = 2 * hi + lo - 1
    else:
        key = P.topic_score.expression
    labelled = exists().where(L.event_id == P.event_id, L.task == task)
    stmt = (
        select(P, N.headline)
        .join(N, N.event_id == P.event_id)
        .where(P.published_at >= period.start, P.published_at < period.end, not_(labelled))
        .order_by(key.asc(), P.id.desc())
        .limit(limit * 2)  # a story scored by two versions may appear twice
    )
    by_story: dict[str, QueueItem] = {}
    for pred, headline in session.execute(stmt).tuples():
        if pred.event_id not in by_story:
            by_story[pred.event_id] = _uncertain_item(task, pred, headline)
    return rank_uncertain(by_story.values())[:limit]


def _uncertain_item(task: Task, pred: PredictionRow, headline: str) -> QueueItem:
    if task == "sentiment":
        probs = (("bearish", pred.p_bearish), ("neutral", pred.p_neutral), ("bullish", pred.p_bullish))
        values = [p for _, p in probs]
        return QueueItem(
            "uncertain", task, headline, pred.event_id, pred.sentiment, probs, margin(values), entropy(values)
        )
    top = pred.topic_score
    return QueueItem("uncertain", task, headline, pred.event_id, pred.topic, ((pred.topic, top),), top, 0.0)


def disagreements(session: Session, *, task: Task, limit: int = 50) -> list[QueueItem]:
    """Texts with more than one distinct label for `task`, most recently labelled first
    (the label store's own query; here only shaped into queue items)."""
    from services.learning.label_store import disagreements as stored_disagreements

    return [
        QueueItem("disagreement", task, d.text, None, labels=tuple(sorted(d.labels.items())))
        for d in stored_disagreements(session, limit=limit, task=task)
    ]
