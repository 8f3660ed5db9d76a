"""The demo console's tail: a message it cannot show is skipped, never the end of the tail."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

import services.broker.clients
from services.embedded.scored_tail import ScoredTail, decode_item

DEEP = b'{"event_id": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_decode_item_returns_the_json_object() -> None:
    assert decode_item(b'{"event_id": "a", "sentiment": "bearish"}') == {
        "event_id": "a",
        "sentiment": "bearish",
    }


@pytest.mark.parametrize(
    "value",
    [None, b"", b"not json", b"\xff\xfe{", b"[1]", b"5", b'"text"', b"null", DEEP, b"[" * 100_000],
    ids=["none", "empty", "text", "not-utf8", "list", "number", "string", "null", "deep-object", "deep-list"],
)
def test_decode_item_skips_what_it_cannot_show(value: bytes | None) -> None:
    """Deep nesting raised RecursionError, which no `except ValueError` catches: the tail
    stopped following its topic at the first such message."""
    assert decode_item(value) is None


class FakeConsumer:
    """One poll with the given values on partition 0, then nothing."""

    def __init__(self, values: list[bytes | None]) -> None:
        self._batches = [{"tp": [SimpleNamespace(offset=i, value=v) for i, v in enumerate(values)]}]

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, partitions: Any) -> None:
        pass

    def seek_to_beginning(self) -> None:
        pass

    def poll(self, timeout_ms: int) -> dict[str, Any]:
        return self._batches.pop() if self._batches else {}

    def close(self, autocommit: bool) -> None:
        pass


def test_the_tail_follows_past_a_deeply_nested_message(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FakeConsumer([b'{"event_id": "a"}', DEEP, b"[1]", b'{"event_id": "b"}'])
    monkeypatch.setattr(services.broker.clients, "kafka_consumer", lambda **_: consumer)
    seen: list[str] = []
    done = threading.Event()

    def on_item(item: dict[str, Any]) -> None:
        seen.append(item["event_id"])
        if item["event_id"] == "b":
            done.set()

    tail = ScoredTail("127.0.0.1:1", "news.scored", on_item=on_item, from_beginning=True)
    tail.start(timeout=5)
    try:
        done.wait(5)
    finally:
        tail.stop()
    assert tail.error is None and seen == ["a", "b"]
