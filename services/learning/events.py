"""`model.events`: telling running workers that the champion changed.

A promotion or rollback is published as one small JSON message keyed `champion`, so on a
compacted topic the newest message is the current champion. The message is a wake-up call,
not the source of truth: workers also poll the registry's champion (FINSENT_MODEL_POLL_SECONDS),
so a lost or unpublished event only delays a switch, and a worker that starts later still
finds the champion. Workers verify the directory's hashes before they load it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, cast

if TYPE_CHECKING:
    from services.settings import Settings
    from services.storage.learning_models import ModelVersionRow

EventKind = Literal["promoted", "rollback"]
EVENT_KINDS: Final[tuple[str, ...]] = ("promoted", "rollback")
EVENT_KEY: Final[bytes] = b"champion"


class ModelEventError(ValueError):
    """A model.events message that is not a valid model event (the message says what is wrong)."""


@dataclass(frozen=True)
class ModelEvent:
    """The champion changed to `version`, whose directory is `path` with weights `sha256`."""

    kind: EventKind
    version: str
    path: str
    sha256: str
    at: datetime

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "kind": self.kind,
                "version": self.version,
                "path": self.path,
                "sha256": self.sha256,
                "at": self.at.astimezone(UTC).isoformat(),
            },
            sort_keys=True,
        ).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str | None) -> ModelEvent:
        """Parse a message value; unknown extra fields are ignored (newer publishers may add some)."""
        if data is None:
            raise ModelEventError("empty model event (no message value)")
        try:
            doc: Any = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelEventError(f"model event is not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ModelEventError(f"model event must be a JSON object, got {type(doc).__name__}")
        missing = [k for k in ("kind", "version", "path", "sha256", "at") if k not in doc]
        if missing:
            raise ModelEventError(f"model event lacks {', '.join(missing)}")
        for key in ("kind", "version", "path", "sha256", "at"):
            if not isinstance(doc[key], str) or not doc[key]:
                raise ModelEventError(
                    f"model event field {key!r} must be a non-empty string, got {doc[key]!r}"
                )
        if doc["kind"] not in EVENT_KINDS:
            raise ModelEventError(f"unknown model event kind {doc['kind']!r}; expected one of {EVENT_KINDS}")
        sha = doc["sha256"]
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ModelEventError(f"model event sha256 {sha!r} is not 64 lowercase hex digits")
        try:
            at = datetime.fromisoformat(doc["at"])
        except ValueError:
            raise ModelEventError(f"model event time {doc['at']!r} is not an ISO 8601 timestamp") from None
        if at.tzinfo is None:
            raise ModelEventError(f"model event time {doc['at']!r} has no time zone")
        return cls(cast(EventKind, doc["kind"]), doc["version"], doc["path"], sha, at.astimezone(UTC))

    @classmethod
    def of(cls, row: ModelVersionRow, *, kind: EventKind, at: datetime) -> ModelEvent:
        return cls(kind, row.version, row.path, row.sha256, at)


def publish_model_event(bootstrap: str, topic: str, event: ModelEvent, *, timeout: float = 10.0) -> None:
    """Send `event` and wait for the broker's acknowledgement (acks=all); `BrokerError` if not."""
    from kafka.errors import KafkaError, KafkaTimeoutError

    from services.broker.clients import kafka_producer
    from services.broker.errors import BrokerError, BrokerUnavailable

    timeout_ms = int(timeout * 1000)
    try:
        producer = kafka_producer(
            bootstrap,
            client_id="finsent-model-events",
            acks="all",
            enable_idempotence=False,  # Tansu has none; the key and the registry make repeats harmless
            max_block_ms=timeout_ms,
            request_timeout_ms=max(timeout_ms // 2, 1000),
            delivery_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap} is not reachable: {_one_line(exc)}") from exc
    try:
        producer.send(topic, value=event.to_json(), key=EVENT_KEY).get(timeout=timeout)
    except KafkaTimeoutError as exc:
        raise BrokerUnavailable(
            f"model event for {event.version} not acknowledged by {bootstrap} on {topic} within "
            f"{timeout:g} s (broker down, or topic missing: run `finsent init`)"
        ) from exc
    except KafkaError as exc:
        raise BrokerError(f"cannot publish the model event to {topic}: {_one_line(exc)}") from exc
    finally:
        producer.close(timeout=timeout)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def announce_champion(
    settings: Settings, row: ModelVersionRow, *, kind: EventKind = "promoted", at: datetime | None = None
) -> bool:
    """Publish the champion change when FINSENT_KAFKA_BOOTSTRAP is set; False when it is not
    (the embedded setup: workers find the new champion by polling the registry)."""
    if settings.kafka.kafka_bootstrap is None:
        return False
    from services.broker.topics import TopicSpec, ensure_topics

    timeout = settings.kafka.kafka_timeout_seconds
    ensure_topics(
        settings.kafka.kafka_bootstrap,
        [
            TopicSpec(
                settings.kafka.topic_model_events,
                settings.kafka.model_events_partitions,
                settings.kafka.topic_replication_factor,
            )
        ],
        timeout=timeout,
    )
    event = ModelEvent.of(row, kind=kind, at=at or datetime.now(UTC))
    publish_model_event(
        settings.kafka.kafka_bootstrap, settings.kafka.topic_model_events, event, timeout=timeout
    )
    return True
