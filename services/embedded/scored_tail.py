"""Follow a topic (`news.scored`; `finsent run` also follows `alerts`) in a background
thread and hand each JSON object message to a callback; any other message is logged and
skipped (`decode_item`), never the end of the tail.

Partitions are assigned directly (no consumer group), so the tail starts reading at once
instead of waiting for a group join. On the embedded broker, which starts empty, it reads
from the beginning; on a real cluster from the end, so old traffic is not replayed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 200


def decode_item(value: bytes | None) -> dict[str, Any] | None:
    """The JSON object a message carries, or None for one to skip: no value, not UTF-8 JSON, not
    an object (the callbacks read fields of a dict), or nested deeper than the decoder's
    recursion limit. That last one raises RecursionError, which is no ValueError: it ended the
    loop, and the console stopped following its topic for good."""
    if value is None:
        return None
    try:
        item = json.loads(value)
    except (RecursionError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return item if isinstance(item, dict) else None


class ScoredTail:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        on_item: Callable[[dict[str, Any]], None],
        from_beginning: bool,
    ) -> None:
        self._bootstrap = bootstrap
        self.topic = topic
        self._on_item = on_item
        self._from_beginning = from_beginning
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tail-{topic}", daemon=True)
        self.error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start following; returns once the partitions are assigned and positioned."""
        self._thread.start()
        self._ready.wait(timeout)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        from kafka import TopicPartition

        from services.broker.clients import kafka_consumer

        try:
            consumer = kafka_consumer(bootstrap=self._bootstrap, enable_auto_commit=False)
            partitions = consumer.partitions_for_topic(self.topic) or set()
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            if self._from_beginning:
                consumer.seek_to_beginning()
            else:
                consumer.seek_to_end()
                for tp in assigned:
                    consumer.position(tp)  # resolve the end now, before anything new is scored
        except Exception as exc:  # reported by start()
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                    for record in records:
                        item = decode_item(record.value)
                        if item is None:
                            log.warning("unreadable message on %s at offset %s", self.topic, record.offset)
                            continue
                        self._on_item(item)
        except Exception as exc:
            self.error = exc
            log.error("stopped following %s: %s", self.topic, exc)
        finally:
            consumer.close(autocommit=False)
