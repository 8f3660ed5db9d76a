"""What a batch makes the scorer observe: the pure batch summary and its log fields, and the
Prometheus metrics `ScorerMetrics` exposes from them (read back from its own registry)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.scorer import (
    BatchSummary,
    DeadLetter,
    RawRecord,
    ScorerMetrics,
    batch_log_fields,
    dead_letter_log_fields,
    summarize_batch,
)
from services.storage.repository import ScoredItem

T0 = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
COMMIT = 1_700_000_010.0  # unix seconds of the batch's commit


def record(
    partition: int, offset: int, *, ts: float | None = COMMIT - 2.0, key: bytes | None = b"k"
) -> RawRecord:
    timestamp_ms = int(ts * 1000) if ts is not None else None
    return RawRecord("news.raw", partition, offset, key, b"{}", timestamp_ms)


def item(event_id: str, rec: RawRecord, version: str = "v1") -> ScoredItem:
    return ScoredItem(
        event_id=event_id,
        headline="h",
        published_at=T0,
        received_at=T0,
        model_version=version,
        topic="Earnings",
        topic_score=0.9,
        sentiment="bullish",
        p_bearish=0.1,
        p_neutral=0.2,
        p_bullish=0.7,
        sentiment_score=0.6,
        scored_at=T0,
        kafka_partition=rec.partition,
        kafka_offset=rec.offset,
    )


# partition 0: offsets 10 (stored), 11 (dead), 12 (duplicate of 10); partition 3: 7 and 8 stored
R = [
    record(0, 10),
    record(0, 11, key=b"bad-\xff"),
    record(0, 12),
    record(3, 7, ts=None),
    record(3, 8, ts=COMMIT + 5),  # a producer clock ahead of ours
]
STORED = [(item("a", R[0]), R[0]), (item("b", R[3]), R[3]), (item("c", R[4], "v2"), R[4])]
DEAD = [DeadLetter(R[1], "InvalidMessage", "invalid_json", "not JSON")]
STAGES = {"score": 0.5, "store": 0.25, "produce": 0.125, "total": 0.875}


def summary() -> BatchSummary:
    return summarize_batch(
        R, stored=STORED, dead=DEAD, duplicates=1, committed_at=COMMIT, stage_seconds=STAGES
    )


def test_summary_counts_positions_and_latencies() -> None:
    s = summary()
    assert (s.records, s.stored, s.dead_lettered, s.duplicates) == (5, 3, 1, 1)
    assert s.dead_letters == {"invalid_json": 1}
    # every record moves the position, stored or not: the offsets are committed per batch
    assert s.positions == {("news.raw", 0): 13, ("news.raw", 3): 9}
    assert s.partition_offsets == {("news.raw", 0): (10, 12), ("news.raw", 3): (7, 8)}
    # no timestamp: not observed; a timestamp in the future: clamped to 0
    assert s.ingest_to_commit_seconds == (2.0, 0.0)
    assert s.event_ids == ("a", "b", "c")
    assert s.model_version == "v2"


def test_an_empty_batch() -> None:
    s = summarize_batch([], stored=[], dead=[], duplicates=0, committed_at=COMMIT)
    assert (s.records, s.stored, s.positions, s.model_version) == (0, 0, {}, None)


def test_batch_log_fields() -> None:
    fields = batch_log_fields(summary())
    assert fields == {
        "batch_records": 5,
        "stored": 3,
        "dead_lettered": 1,
        "duplicates": 1,
        "partitions": {"news.raw/0": [10, 12], "news.raw/3": [7, 8]},
        "event_ids": ["a", "b", "c"],
        "score_seconds": 0.5,
        "store_seconds": 0.25,
        "produce_seconds": 0.125,
        "seconds": 0.875,
        "max_ingest_to_commit_seconds": 2.0,
    }


def test_a_long_batch_logs_its_first_and_last_event_id() -> None:
    records = [record(1, i) for i in range(50)]
    stored = [(item(f"e{i}", r), r) for i, r in enumerate(records)]
    fields = batch_log_fields(
        summarize_batch(records, stored=stored, dead=[], duplicates=0, committed_at=COMMIT)
    )
    assert "event_ids" not in fields
    assert (fields["first_event_id"], fields["last_event_id"]) == ("e0", "e49")


def test_dead_letter_log_fields() -> None:
    assert dead_letter_log_fields(DEAD[0]) == {
        "event_key": "bad-\\xff",
        "source_topic": "news.raw",
        "source_partition": 0,
        "source_offset": 11,
        "error_type": "invalid_json",
        "error_class": "InvalidMessage",
        "reason": "not JSON",
    }
    keyless = DeadLetter(record(0, 1, key=None), "InvalidMessage", "empty", "empty")
    assert dead_letter_log_fields(keyless)["event_key"] is None


# --------------------------------------------------------------------------- ScorerMetrics


@pytest.fixture
def metrics() -> ScorerMetrics:
    return ScorerMetrics(clock=lambda: COMMIT + 1)


def value(m: ScorerMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_record_batch(metrics: ScorerMetrics) -> None:
    metrics.partitions_assigned([("news.raw", 0), ("news.raw", 3)])
    metrics.record_batch(summary())
    metrics.record_batch(summary())
    assert value(metrics, "finsent_scorer_items_total") == 6
    assert value(metrics, "finsent_scorer_duplicates_total") == 2
    assert value(metrics, "finsent_scorer_dead_letters_total", error_type="invalid_json") == 2
    assert value(metrics, "finsent_scorer_batch_size_count") == 2
    assert value(metrics, "finsent_scorer_batch_size_sum") == 10
    assert value(metrics, "finsent_scorer_batch_size_bucket", le="4.0") == 0
    assert value(metrics, "finsent_scorer_batch_size_bucket", le="8.0") == 2
    assert value(metrics, "finsent_scorer_batch_seconds_sum", stage="store") == 0.5
    assert value(metrics, "finsent_scorer_batch_seconds_count", stage="total") == 2
    assert value(metrics, "finsent_scorer_ingest_to_commit_seconds_count") == 4
    assert value(metrics, "finsent_scorer_ingest_to_commit_seconds_bucket", le="0.005") == 2
    assert value(metrics, "finsent_scorer_consumer_position", topic="news.raw", partition="0") == 13
    assert value(metrics, "finsent_scorer_consumer_position", topic="news.raw", partition="3") == 9
    assert value(metrics, "finsent_scorer_last_batch_timestamp_seconds") == COMMIT + 1
    assert value(metrics, "finsent_model_info", model_version="v2") == 1


def test_every_stage_is_exposed_before_the_first_batch(metrics: ScorerMetrics) -> None:
    for stage in ("score", "store", "produce", "total"):
        assert value(metrics, "finsent_scorer_batch_seconds_count", stage=stage) == 0


def test_model_info_names_one_version(metrics: ScorerMetrics) -> None:
    metrics.set_model_version("v1")
    metrics.set_model_version("v2")
    assert value(metrics, "finsent_model_info", model_version="v1") is None
    assert value(metrics, "finsent_model_info", model_version="v2") == 1
    assert metrics.health_snapshot().model_version == "v2"


def test_assignment_and_revocation(metrics: ScorerMetrics) -> None:
    metrics.partitions_revoked(set())  # faust does this before the first join
    assert metrics.health_snapshot().assigned is None
    metrics.partitions_assigned([("news.raw", 0), ("news.raw", 3)])
    metrics.record_batch(summary())
    assert value(metrics, "finsent_scorer_assigned_partitions") == 2

    metrics.partitions_revoked([("news.raw", 3)])
    assert value(metrics, "finsent_scorer_assigned_partitions") == 1
    assert value(metrics, "finsent_scorer_consumer_position", topic="news.raw", partition="3") is None
    assert value(metrics, "finsent_scorer_consumer_position", topic="news.raw", partition="0") == 13

    metrics.partitions_assigned([("news.raw", 1)])  # a new assignment replaces the old one
    assert metrics.health_snapshot().assigned == [("news.raw", 1)]
    assert value(metrics, "finsent_scorer_consumer_position", topic="news.raw", partition="0") is None
    metrics.record_batch(summary())  # a batch of partitions no longer assigned: not reported
    assert value(metrics, "finsent_scorer_consumer_position", topic="news.raw", partition="0") is None


def test_storage_retries_degrade_health_until_a_commit(metrics: ScorerMetrics) -> None:
    metrics.partitions_assigned([("news.raw", 0)])
    error = ConnectionError("server closed the connection")
    metrics.storage_retry(1, 0.5, error)
    metrics.storage_retry(2, 1.0, error)
    assert value(metrics, "finsent_scorer_storage_retries_total") == 2
    snapshot = metrics.health_snapshot()
    assert snapshot.database_retrying and snapshot.storage_retries == 2
    metrics.record_batch(summary())
    assert not metrics.health_snapshot().database_retrying


def test_registries_are_independent() -> None:
    a, b = ScorerMetrics(), ScorerMetrics()
    a.items.inc(3)
    assert value(b, "finsent_scorer_items_total") == 0
