"""`NewsProducer`: the one way sources write to `news.raw` (kafka-python, keyed by event_id).

Keyed by event_id so every copy of an item lands in the same partition and the scorer's
upsert makes re-sends harmless. acks=all, and no idempotent producer: Tansu, the embedded
broker, has none, and the event_id key already makes duplicates harmless. Delivery errors
are collected from the producer's background thread and raised by `flush()`, so a caller
that flushed without an error knows every message it sent is stored by the broker.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from kafka.producer.future import FutureRecordMetadata

from services.broker.clients import kafka_producer
from services.broker.errors import BrokerError, BrokerUnavailable
from services.broker.security import KafkaSecurity
from services.ingest.encoding import EncodedNews, encode_news
from services.settings import FlatSettings

# A few ms of batching: one request (and one record batch per partition) per linger period
# instead of one per message, which is what the broker and the consuming worker pay for.
DEFAULT_LINGER_MS: int = FlatSettings.model_fields["ingest_linger_ms"].default
BATCH_BYTES = 64 * 1024
DEFAULT_MAX_REQUEST_BYTES = 1_048_576  # Apache Kafka's default message.max.bytes is about this
# How long send() may wait for metadata (an unreachable broker, a missing topic).
DEFAULT_MAX_BLOCK_S: float = FlatSettings.model_fields["kafka_timeout_seconds"].default
DEFAULT_DELIVERY_TIMEOUT_S = 30.0

Headers = Sequence[tuple[str, bytes]]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class NewsProducer:
    """Sends news items (validated) or raw bytes (as they are) to one topic."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str,
        client_id: str = "finsent-ingest",
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_block_s: float = DEFAULT_MAX_BLOCK_S,
        delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
        linger_ms: int = DEFAULT_LINGER_MS,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.sent = 0
        self._max_block_s = max_block_s
        self._failures: list[BaseException] = []
        self._lock = threading.Lock()
        request_timeout_ms = int(delivery_timeout_s * 500)  # a retry fits inside the delivery timeout
        try:
            self._producer = kafka_producer(
                bootstrap,
                security=security,
                client_id=client_id,
                acks="all",
                enable_idempotence=False,
                linger_ms=linger_ms,
                batch_size=BATCH_BYTES,
                max_request_size=max_request_bytes,
                max_block_ms=int(max_block_s * 1000),
                request_timeout_ms=request_timeout_ms,
                delivery_timeout_ms=int(delivery_timeout_s * 1000),
                bootstrap_timeout_ms=int(max_block_s * 1000),
            )
        except KafkaError as exc:
            reason = _one_line(exc)
            raise BrokerUnavailable(f"Kafka broker at {bootstrap} is not reachable: {reason}") from exc

    def send(self, item: Mapping[str, Any]) -> str:
        """Validate and send one news item; return its event id. Raises `InvalidMessage` if invalid."""
        encoded = encode_news(item)
        self.send_encoded(encoded)
        return encoded.event_id

    def send_encoded(self, encoded: EncodedNews) -> FutureRecordMetadata:
        return self.send_raw(encoded.payload, encoded.event_id)

    def send_raw(
        self, payload: bytes | None, key: str | bytes | None, *, headers: Headers | None = None
    ) -> FutureRecordMetadata:
        """Send bytes exactly as given, valid or not (replays, and tests that inject malformed input).

        A delivery failure is raised by the next `flush()`.
        """
        future = self._send(payload, key, headers)
        future.add_errback(self._record_failure)
        return future

    def deliver(self, batch: Sequence[EncodedNews], *, timeout: float) -> None:
        """Send `batch` and wait until the broker has acknowledged each of its messages.

        For concurrent callers (HTTP requests): each waits on its own messages only, so one
        request's failure is never reported to, or hidden from, another.
        """
        futures = [self._send(encoded.payload, encoded.event_id, None) for encoded in batch]
        deadline = time.monotonic() + timeout
        for future in futures:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaTimeoutError as exc:
                raise BrokerUnavailable(
                    f"messages to {self.topic} not acknowledged by {self.bootstrap} within {timeout:g} s"
                ) from exc
            except KafkaError as exc:
                raise BrokerError(f"message to {self.topic} not delivered: {_one_line(exc)}") from exc

    def _send(
        self, payload: bytes | None, key: str | bytes | None, headers: Headers | None
    ) -> FutureRecordMetadata:
        key_bytes = key.encode("utf-8") if isinstance(key, str) else key
        try:
            future = self._producer.send(
                self.topic, value=payload, key=key_bytes, headers=list(headers) if headers else None
            )
        except MessageSizeTooLargeError as exc:
            raise BrokerError(f"message too large for {self.topic}: {_one_line(exc)}") from exc
        except KafkaTimeoutError as exc:
            raise BrokerUnavailable(
                f"no answer about topic {self.topic} from {self.bootstrap} within {self._max_block_s:g} s "
                f"(broker down, or topic missing: run `finsent init`): {_one_line(exc)}"
            ) from exc
        except KafkaError as exc:
            raise BrokerError(f"cannot send to {self.topic} on {self.bootstrap}: {_one_line(exc)}") from exc
        self.sent += 1
        return future

    def _record_failure(self, exc: BaseException) -> None:  # called on the producer's I/O thread
        with self._lock:
            self._failures.append(exc)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every message sent so far is acknowledged; raise `BrokerError` if any was not."""
        try:
            self._producer.flush(timeout=timeout)
        except KafkaTimeoutError as exc:
            raise BrokerUnavailable(
                f"messages to {self.topic} not acknowledged by {self.bootstrap} in time: {_one_line(exc)}"
            ) from exc
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise BrokerError(
                f"{len(failures)} message(s) were not delivered to {self.topic} on {self.bootstrap}: "
                f"{_one_line(failures[0])}"
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush (raising on undelivered messages), then close the connection either way."""
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # already failing: do not mask the original error with a flush error
            with contextlib.suppress(BrokerError):
                self.close()


class NewsSender(Protocol):
    """What the sources need from a producer (a fake in unit tests)."""

    def send_encoded(self, encoded: EncodedNews) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def deliver(self, batch: Sequence[EncodedNews], *, timeout: float) -> None: ...
