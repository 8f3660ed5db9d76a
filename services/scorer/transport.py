"""The faust Kafka transport with a configurable fetch wait for the worker's consumer.

faust 0.15 builds the worker's aiokafka consumer with `fetch_max_wait_ms=1500` and no way
to change it. Apache Kafka answers a fetch as soon as one byte is there, so the value barely
matters on a real cluster; Tansu, the embedded broker, holds a fetch for a good part of it
even when records are waiting (benchmarks/pipeline_latency.py: delivery p99 ≈ max_wait / 2),
which then dominates the ingest→commit latency. So the worker sets it from
FINSENT_SCORER_FETCH_MAX_WAIT_MS. aiokafka reads the private `_fetch_max_wait_ms` when the
consumer starts its fetcher (aiokafka 0.14, `AIOKafkaConsumer.start`); the versions are
pinned and tests/unit/test_scorer_transport.py checks the value reaches the fetcher.
`kafka_producer` reaches the aiokafka producer the same way, for `services.scorer.publish`.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.transport.drivers import aiokafka as faust_aiokafka


def fetch_tuned_transport(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    """A faust Kafka transport class whose worker consumer waits at most `fetch_max_wait_ms`."""
    if fetch_max_wait_ms < 1:
        raise ValueError(f"fetch_max_wait_ms must be >= 1, got {fetch_max_wait_ms}")

    class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class TunedConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class TunedTransport(faust_aiokafka.Transport):
        Consumer = TunedConsumer

    return TunedTransport


class ScorerApp(faust.App):
    """A faust App whose consumer transport is `fetch_tuned_transport(fetch_max_wait_ms)`."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self._transport_class = fetch_tuned_transport(fetch_max_wait_ms)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return self._transport_class(self.conf.broker_consumer, self)


def kafka_producer(app: faust.App) -> AIOKafkaProducer:
    """The started aiokafka producer inside faust's producer (faust 0.15 keeps it private as
    `Producer._ensure_producer()`; the versions are pinned), for record-batch publishing."""
    producer = app.producer
    if not isinstance(producer, faust_aiokafka.Producer):
        raise TypeError(f"expected faust's aiokafka producer, got {type(producer).__name__}")
    return producer._ensure_producer()
