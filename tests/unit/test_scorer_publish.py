"""`news.scored` record batches are partitioned as a keyed send would be."""

from __future__ import annotations

from kafka.partitioner import murmur2

from services.scorer.publish import partition_for


def test_partition_for_matches_the_java_client_murmur2_partitioning() -> None:
    keys = [f"event-{i}".encode() for i in range(500)] + [b"", b"\xff\xfe", "é".encode()]
    for partitions in (1, 3, 4, 12):
        ours = [partition_for(k, list(range(partitions))) for k in keys]
        assert ours == [(murmur2(k) & 0x7FFFFFFF) % partitions for k in keys]
    assert len({partition_for(k, [0, 1, 2, 3]) for k in keys}) == 4  # keys spread over all
