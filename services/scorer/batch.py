"""One micro-batch of `news.raw` records in, scored items and dead letters out.

No Kafka client, no database, no event loop here: the caller hands in plain `RawRecord`s
(built from a faust event or a kafka-python record), runs `score_batch` in a worker thread
(it calls the model), stores `BatchResult.scored` and produces `BatchResult.dead` to the DLQ
with `dead_letter_headers`, and only then commits offsets. `score_batch` is `parse_batch`
then `predict_items`; the faust worker calls them apart, to score a large batch in slices
while the previous slice is being stored.

Every record of the batch ends up in exactly one place: scored, dead-lettered, or counted
as a duplicate of an earlier record of the same batch (same `event_id`; scored once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bert_core import Prediction
from services.broker.dead_letters import (
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TIMESTAMP,
    H_SOURCE_TOPIC,
)
from services.schemas import InvalidMessage, NewsItem, parse_raw_news
from services.schemas.news_raw import DEFAULT_MAX_FUTURE_SKEW, MAX_PAYLOAD_BYTES
from services.storage.repository import ScoredItem

MAX_ERROR_MESSAGE_CHARS = 1_000
INFERENCE_ERROR_TYPE = "inference_error"


class PredictorLike(Protocol):
    """What the scorer needs from `bert_core.Predictor` (tests may wrap one)."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One consumed Kafka record, independent of the client library that read it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be scored, with why. Its DLQ message is
    `services.scorer.dead_letters.dead_letter_record`: key `record.key`, value `record.value`
    unchanged (raw bytes, whatever they are) up to 64 KiB, a marked prefix beyond."""

    record: RawRecord
    error_class: str  # e.g. InvalidMessage, DataError
    error_type: str  # short machine-readable kind, e.g. invalid_json, missing_headline
    reason: str  # one line for humans


@dataclass(slots=True)
class BatchResult:
    scored: list[ScoredItem] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0  # records whose event_id appeared earlier in the same batch


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ParsedBatch:
    """A micro-batch after validation: what can be scored, what cannot, and repeats."""

    valid: list[tuple[RawRecord, NewsItem]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0  # records whose event_id appeared earlier in the same batch


def parse_batch(
    records: Sequence[RawRecord],
    *,
    received_at: datetime,
    watchlist: Mapping[str, str],
    max_bytes: int = MAX_PAYLOAD_BYTES,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
) -> ParsedBatch:
    """Validate `records`; the first record of an event_id is kept, later ones counted.
    `received_at` (timezone-aware) is the default `published_at` of items without one, and
    items dated more than `max_future_skew` after it are dead letters."""
    parsed = ParsedBatch()
    seen: set[str] = set()
    for record in records:
        try:
            item = parse_raw_news(
                record.value,
                received_at=received_at,
                watchlist=watchlist,
                max_bytes=max_bytes,
                max_future_skew=max_future_skew,
            )
        except InvalidMessage as exc:
            parsed.dead.append(DeadLetter(record, type(exc).__name__, exc.error_type, exc.reason))
            continue
        if item.event_id in seen:
            parsed.duplicates += 1
            continue
        seen.add(item.event_id)
        parsed.valid.append((record, item))
    return parsed


def predict_items(
    valid: Sequence[tuple[RawRecord, NewsItem]],
    *,
    predictor: PredictorLike,
    clock: Callable[[], datetime] = _utcnow,
) -> BatchResult:
    """Score validated items with one `predictor.predict` call.

    If the batched call raises, every item is predicted on its own, so only the item(s)
    that fail alone go to the dead letters (with the exception's class and message).
    `clock()` stamps `scored_at` after inference.
    """
    return start_predict_items(valid, predictor=predictor).finish(clock=clock)


class PendingSlice:
    """Validated items whose model passes were queued by `start_predict_items` and may still
    be running. `done` (a concurrent.futures Future, or None when there is nothing to wait
    for) resolves when the passes have ended; `finish` then builds the `BatchResult` the way
    `predict_items` does, falling back to one call per item if the batched call failed."""

    def __init__(
        self,
        valid: Sequence[tuple[RawRecord, NewsItem]],
        predictor: PredictorLike,
        pending: PendingPredictionsLike | None,
        error: Exception | None,
    ) -> None:
        self.valid = list(valid)
        self.predictor = predictor
        self._pending = pending
        self._error = error
        self.done: Future[None] | None = getattr(pending, "done", None)

    def finish(self, *, clock: Callable[[], datetime] = _utcnow) -> BatchResult:
        result = BatchResult()
        if not self.valid:
            return result
        predictions: list[Prediction | BaseException]
        try:
            if self._pending is None:
                raise self._error or RuntimeError("nothing was submitted")
            predictions = list(_checked(self._pending.result(), len(self.valid)))
        except Exception:
            predictions = []
            for _, item in self.valid:
                try:
                    predictions.append(_predict(self.predictor, [item.headline])[0])
                except Exception as exc:
                    predictions.append(exc)

        scored_at = clock()
        for (record, item), prediction in zip(self.valid, predictions, strict=True):
            if isinstance(prediction, BaseException):
                result.dead.append(
                    DeadLetter(record, type(prediction).__name__, INFERENCE_ERROR_TYPE, _one_line(prediction))
                )
            else:
                result.scored.append(_scored(item, prediction, record, scored_at))
        return result


def start_predict_items(
    valid: Sequence[tuple[RawRecord, NewsItem]], *, predictor: PredictorLike
) -> PendingSlice:
    """Queue the model passes of `valid` and return without waiting for them, where the
    predictor can (`bert_core.Predictor.submit`); a predictor with only `predict` is called
    here. Never raises for a bad item or a failed call: `PendingSlice.finish` turns those
    into dead letters."""
    texts = [item.headline for _, item in valid]
    if not texts:
        return PendingSlice(valid, predictor, None, None)
    submit = getattr(predictor, "submit", None)
    try:
        pending: PendingPredictionsLike = (
            submit(texts) if submit is not None else _Ready(predictor.predict(texts))
        )
    except Exception as exc:
        return PendingSlice(valid, predictor, None, exc)
    return PendingSlice(valid, predictor, pending, None)


def start_slices(
    slices: Sequence[Sequence[tuple[RawRecord, NewsItem]]], *, predictor: PredictorLike
) -> list[PendingSlice]:
    """`start_predict_items` for each slice in turn, in one call, so that no other batch's
    work lands on the model between them; it stops after a slice that was scored before
    its call returned (a predictor without pass threads), so that slice can be stored while
    the caller asks for the next ones. Returns the slices started, at least one."""
    started: list[PendingSlice] = []
    for part in slices:
        pending = start_predict_items(part, predictor=predictor)
        started.append(pending)
        if pending.done is None or pending.done.done():
            break
    return started


class PendingPredictionsLike(Protocol):
    """What `start_predict_items` needs back from a predictor's `submit` (`bert_core.PendingPredictions`)."""

    def result(self) -> list[Prediction]: ...


@dataclass(frozen=True, slots=True)
class _Ready:
    """Predictions already made (a predictor without `submit`)."""

    predictions: list[Prediction]

    def result(self) -> list[Prediction]:
        return self.predictions


def score_batch(
    records: Sequence[RawRecord],
    *,
    predictor: PredictorLike,
    received_at: datetime,
    watchlist: Mapping[str, str],
    max_bytes: int = MAX_PAYLOAD_BYTES,
    clock: Callable[[], datetime] = _utcnow,
) -> BatchResult:
    """`parse_batch` then `predict_items` on all of it: a whole micro-batch in one call."""
    parsed = parse_batch(records, received_at=received_at, watchlist=watchlist, max_bytes=max_bytes)
    result = predict_items(parsed.valid, predictor=predictor, clock=clock)
    result.dead[:0] = parsed.dead
    result.duplicates = parsed.duplicates
    return result


def _predict(predictor: PredictorLike, texts: list[str]) -> list[Prediction]:
    return _checked(predictor.predict(texts), len(texts))


def _checked(out: list[Prediction], expected: int) -> list[Prediction]:
    if len(out) != expected:
        raise RuntimeError(f"predictor returned {len(out)} predictions for {expected} texts")
    return out


def _scored(item: NewsItem, p: Prediction, record: RawRecord, scored_at: datetime) -> ScoredItem:
    probs = p.sentiment_probs
    return ScoredItem.from_news(
        item,
        model_version=p.model_version,
        topic=p.topic,
        topic_score=p.topic_score,
        sentiment=p.sentiment,
        p_bearish=float(probs.get("bearish", 0.0)),
        p_neutral=float(probs.get("neutral", 0.0)),
        p_bullish=float(probs.get("bullish", 0.0)),
        sentiment_score=p.sentiment_score,
        scored_at=scored_at,
        kafka_partition=record.partition,
        kafka_offset=record.offset,
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def dead_letter_headers(
    dead: DeadLetter, *, max_message_chars: int = MAX_ERROR_MESSAGE_CHARS
) -> list[tuple[str, bytes]]:
    """Kafka headers of the DLQ message for `dead`: where it came from and why it failed."""
    record = dead.record
    message = dead.reason
    if len(message) > max_message_chars:
        message = message[: max_message_chars - 1] + "…"
    headers = [
        (H_SOURCE_TOPIC, _utf8(record.topic)),
        (H_SOURCE_PARTITION, str(record.partition).encode()),
        (H_SOURCE_OFFSET, str(record.offset).encode()),
        (H_ERROR_CLASS, _utf8(dead.error_class)),
        (H_ERROR_TYPE, _utf8(dead.error_type)),
        (H_ERROR_MESSAGE, _utf8(message)),
    ]
    if record.timestamp_ms is not None:
        headers.append((H_SOURCE_TIMESTAMP, str(record.timestamp_ms).encode()))
    return headers


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", errors="backslashreplace")  # never fail on a lone surrogate
