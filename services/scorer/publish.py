"""Publishing a slice's `news.scored` messages as Kafka record batches.

Why not `topic.send` per message: faust wraps every message in its own futures, callbacks
and codec calls, about 0.3 ms of event-loop time each (measured: a 1,024-item batch took
0.3-0.4 s to publish against 0.12 s to store), and that time is taken from the model on
a two-core machine. aiokafka's `BatchBuilder` appends a record in C and a whole batch has
one delivery future. Keys are partitioned exactly as a keyed `send` would be (aiokafka's
`DefaultPartitioner`: murmur2 of the key, as the Java client does), so consumers see the
same partitioning either way.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

_partitioner = DefaultPartitioner()


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition a keyed message goes to (the producer's default partitioner)."""
    return int(_partitioner(key, list(partitions), list(partitions)))


async def publish_keyed(
    producer: AIOKafkaProducer, topic: str, messages: Sequence[tuple[bytes, bytes]]
) -> None:
    """Send `(key, value)` messages to `topic` and return once the broker acknowledged all
    of them (with the producer's `acks`); raises if any batch failed."""
    if not messages:
        return
    partitions = sorted(await producer.partitions_for(topic))
    by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
    for key, value in messages:
        by_partition[partition_for(key, partitions)].append((key, value))
    deliveries: list[Any] = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                # An empty batch takes any first record; scored messages are small fixed-shape
                # JSON (ids, labels, probabilities; never the story text).
                batch.append(key=key, value=value, timestamp=None)
        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*deliveries)
