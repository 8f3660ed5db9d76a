"""The worker's fetch wait reaches aiokafka (faust hard-codes 1500 ms; see services/scorer/transport.py)."""

from __future__ import annotations

import asyncio
import inspect

import aiokafka
import pytest

from services.scorer.transport import ScorerApp, fetch_tuned_transport


def test_worker_consumer_gets_the_configured_fetch_wait() -> None:
    async def build() -> int:
        app = ScorerApp(
            "transport-test", broker="kafka://127.0.0.1:1", fetch_max_wait_ms=123, web_enabled=False
        )
        consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            del consumer

    assert asyncio.run(build()) == 123


def test_aiokafka_still_reads_the_attribute_when_it_starts_its_fetcher() -> None:
    # If an aiokafka upgrade renames the attribute, the setting would silently do nothing.
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)


def test_fetch_wait_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fetch_max_wait_ms"):
        fetch_tuned_transport(0)
