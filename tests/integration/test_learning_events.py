"""Model events through the real (embedded) broker: publish, consume, and the announcement
that happens only when a broker is configured."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.broker import BrokerUnavailable, EmbeddedBroker
from services.learning.events import EVENT_KEY, ModelEvent, announce_champion, publish_model_event
from services.settings import Settings
from services.storage import ModelVersionRow

pytestmark = pytest.mark.integration

AT = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


def test_published_event_is_consumed_as_sent(
    kafka_broker: EmbeddedBroker, make_topic: Callable[..., str], consume_topic: Callable[..., Any]
) -> None:
    topic = make_topic("model.events")
    events = [
        ModelEvent("promoted", "v2", "/models/v2", "a" * 64, AT),
        ModelEvent("rollback", "v1", "/models/v1", "b" * 64, AT),
    ]
    for event in events:
        publish_model_event(kafka_broker.bootstrap, topic, event, timeout=10)
    records = consume_topic(topic, expected=2)
    assert [r.key for r in records] == [EVENT_KEY, EVENT_KEY]
    assert [ModelEvent.from_json(r.value) for r in records] == events


def test_announce_only_with_a_configured_broker(
    kafka_broker: EmbeddedBroker, consume_topic: Callable[..., Any], tmp_path: Path
) -> None:
    row = ModelVersionRow(version="v3", path="/models/v3", sha256="c" * 64)
    embedded = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    assert announce_champion(embedded, row) is False

    topic = f"model.events-{time.time_ns()}"  # created by announce_champion itself
    configured = Settings(  # type: ignore[call-arg]
        _env_file=None, home=tmp_path, kafka_bootstrap=kafka_broker.bootstrap, topic_model_events=topic
    )
    assert announce_champion(configured, row, kind="rollback", at=AT) is True
    [record] = consume_topic(topic, expected=1)
    assert ModelEvent.from_json(record.value) == ModelEvent("rollback", "v3", "/models/v3", "c" * 64, AT)


def test_unreachable_broker_is_one_clear_error() -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:9 is not reachable"):
        publish_model_event(
            "127.0.0.1:9", "model.events", ModelEvent("promoted", "v", "/p", "d" * 64, AT), timeout=2
        )
    assert time.monotonic() - started < 15
