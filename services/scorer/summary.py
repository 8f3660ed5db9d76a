"""What one finished micro-batch tells the operator, computed without I/O.

The scorer's shell measures the stages and hands over what happened to each record; this
module turns that into the numbers the metrics observe and the fields the batch log line
carries, so both can be tested by feeding lists in and comparing what comes out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.scorer.batch import DeadLetter, RawRecord
from services.storage.repository import ScoredItem

Stage = Literal["score", "store", "produce", "total"]
STAGES: tuple[Stage, ...] = ("score", "store", "produce", "total")
TopicPartition = tuple[str, int]

MAX_LISTED_EVENT_IDS = 10  # a longer batch logs its first and last event id only
MAX_LOGGED_KEY_CHARS = 200


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """One batch, as counted after its database commit and its produces."""

    records: int
    stored: int
    duplicates: int
    dead_letters: Mapping[str, int]  # error_type → records
    positions: Mapping[TopicPartition, int]  # next offset to consume, per partition
    partition_offsets: Mapping[TopicPartition, tuple[int, int]]  # first and last offset seen
    ingest_to_commit_seconds: tuple[float, ...]  # one per stored item
    event_ids: tuple[str, ...]  # of the stored items, in batch order
    model_version: str | None  # of the last stored item
    committed_at: float  # unix seconds
    stage_seconds: Mapping[Stage, float] = field(default_factory=dict)

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_letters.values())


def summarize_batch(
    records: Sequence[RawRecord],
    *,
    stored: Sequence[tuple[ScoredItem, RawRecord]],
    dead: Sequence[DeadLetter],
    duplicates: int,
    committed_at: float,
    stage_seconds: Mapping[Stage, float] | None = None,
) -> BatchSummary:
    """Summarise a batch whose `stored` items (each with its record) were committed at
    `committed_at` (unix seconds).

    The position of a partition counts every record of the batch — stored, dead-lettered or
    duplicate — because the batch's offsets are committed as a whole: it is the offset the
    group will resume from. Ingest→commit latency is measured from the Kafka timestamp
    (producer or broker time) and clamped at 0, since producer clocks may run ahead.
    """
    positions: dict[TopicPartition, int] = {}
    spans: dict[TopicPartition, tuple[int, int]] = {}
    for record in records:
        tp = (record.topic, record.partition)
        positions[tp] = max(positions.get(tp, 0), record.offset + 1)
        first, last = spans.get(tp, (record.offset, record.offset))
        spans[tp] = (min(first, record.offset), max(last, record.offset))
    latencies = tuple(
        max(0.0, committed_at - record.timestamp_ms / 1000.0)
        for _, record in stored
        if record.timestamp_ms is not None
    )
    return BatchSummary(
        records=len(records),
        stored=len(stored),
        duplicates=duplicates,
        dead_letters=dict(Counter(d.error_type for d in dead)),
        positions=positions,
        partition_offsets=spans,
        ingest_to_commit_seconds=latencies,
        event_ids=tuple(item.event_id for item, _ in stored),
        model_version=stored[-1][0].model_version if stored else None,
        committed_at=committed_at,
        stage_seconds=dict(stage_seconds or {}),
    )


def batch_log_fields(summary: BatchSummary) -> dict[str, Any]:
    """Structured fields of the per-batch log line (keys never clash with `LogRecord`'s)."""
    fields: dict[str, Any] = {
        "batch_records": summary.records,
        "stored": summary.stored,
        "dead_lettered": summary.dead_lettered,
        "duplicates": summary.duplicates,
        "partitions": {
            f"{topic}/{partition}": list(span)
            for (topic, partition), span in sorted(summary.partition_offsets.items())
        },
    }
    ids = summary.event_ids
    if len(ids) <= MAX_LISTED_EVENT_IDS:
        fields["event_ids"] = list(ids)
    else:
        fields["first_event_id"], fields["last_event_id"] = ids[0], ids[-1]
    for stage, seconds in summary.stage_seconds.items():
        fields["seconds" if stage == "total" else f"{stage}_seconds"] = round(seconds, 4)
    if summary.ingest_to_commit_seconds:
        fields["max_ingest_to_commit_seconds"] = round(max(summary.ingest_to_commit_seconds), 3)
    return fields


def dead_letter_log_fields(dead: DeadLetter) -> dict[str, Any]:
    """Structured fields of the WARNING logged for each dead letter: enough to find the
    message on `news.dlq` and on the source topic, and why it failed."""
    record = dead.record
    key = None
    if record.key is not None:
        key = record.key.decode("utf-8", errors="backslashreplace")[:MAX_LOGGED_KEY_CHARS]
    return {
        "event_key": key,
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "error_type": dead.error_type,
        "error_class": dead.error_class,
        "reason": dead.reason,
    }
