"""The pipeline's topics: their names and sizes from settings, created up front by the admin client.

Topics are created explicitly, never by the broker's auto-creation: auto-created topics get
the broker's default partition count (Tansu even auto-creates on a producer's metadata
request when the producer asks it not to), and the partition count caps how many scorer
workers can share the stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from services.broker.clients import kafka_admin
from services.broker.errors import BrokerUnavailable, TopicError
from services.broker.security import KafkaSecurity
from services.settings import FlatSettings, Settings

DEFAULT_TIMEOUT_S: float = FlatSettings.model_fields["kafka_timeout_seconds"].default
_NO_ERROR = 0
_ALREADY_EXISTS = TopicAlreadyExistsError.errno


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as configured: name, partitions, replicas."""

    name: str
    partitions: int
    replication_factor: int = 1


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as found on the broker after `ensure_topics`."""

    name: str
    partitions: int
    created: bool  # False: it existed already (its partition count may differ from the spec)


def pipeline_topics(settings: Settings) -> list[TopicSpec]:
    """The topics of the pipeline, sized from settings.

    `alerts` has one partition: a handful of messages a day, and one partition keeps each
    alert's open, escalation and resolution in order for every consumer.
    """
    replicas = settings.kafka.topic_replication_factor
    news = settings.kafka.topic_partitions
    return [
        TopicSpec(settings.kafka.topic_news_raw, news, replicas),
        TopicSpec(settings.kafka.topic_news_scored, news, replicas),
        TopicSpec(settings.kafka.topic_news_dlq, news, replicas),
        TopicSpec(settings.kafka.topic_model_events, settings.kafka.model_events_partitions, replicas),
        TopicSpec(settings.kafka.topic_alerts, 1, replicas),
    ]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextmanager
def admin_client(
    bootstrap: str, *, timeout: float = DEFAULT_TIMEOUT_S, security: KafkaSecurity | None = None
) -> Iterator[KafkaAdminClient]:
    """A connected admin client; an unreachable broker raises `BrokerUnavailable` within `timeout`
    (`KafkaSecurityError` when TLS fails). `security`: the settings' unless given."""
    timeout_ms = int(timeout * 1000)
    try:
        admin = kafka_admin(
            bootstrap,
            security=security,
            client_id="finsent-admin",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap} is not reachable: {_one_line(exc)}") from exc
    try:
        yield admin
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, names: Sequence[str]) -> dict[str, int | None]:
    described: list[dict[str, Any]] = admin.describe_topics(list(names))
    counts: dict[str, int | None] = dict.fromkeys(names)
    for topic in described:
        if topic.get("error_code", _NO_ERROR) == _NO_ERROR and topic.get("partitions"):
            counts[topic["name"]] = len(topic["partitions"])
    return counts


def describe_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    security: KafkaSecurity | None = None,
) -> dict[str, int | None]:
    """Partition count of each named topic, None for a topic that does not exist.

    Uses an admin metadata request, which (unlike a producer's) never auto-creates a topic.
    """
    names = list(names)
    with admin_client(bootstrap, timeout=timeout, security=security) as admin:
        try:
            return _partition_counts(admin, names)
        except KafkaError as exc:
            raise BrokerUnavailable(f"Kafka broker at {bootstrap}: {_one_line(exc)}") from exc


def require_topic(
    bootstrap: str, name: str, *, timeout: float = DEFAULT_TIMEOUT_S, security: KafkaSecurity | None = None
) -> int:
    """The partition count of `name`; `TopicError` telling the user to run `finsent init` if missing."""
    partitions = describe_topics(bootstrap, [name], timeout=timeout, security=security)[name]
    if partitions is None:
        raise TopicError(f"topic {name} does not exist on {bootstrap}; create it with `finsent init`")
    return partitions


def ensure_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    verify_attempts: int = 10,
    retry_delay: float = 0.3,
    security: KafkaSecurity | None = None,
) -> list[TopicState]:
    """Create the topics that are missing and check that all of them exist afterwards.

    Safe to run again and concurrently: a topic that already exists (or that another process
    creates in between) is accepted as it is. Metadata can lag behind creation, so the
    check retries `verify_attempts` times before raising `TopicError`.
    """
    if not specs:
        return []
    names = [spec.name for spec in specs]
    with admin_client(bootstrap, timeout=timeout, security=security) as admin:
        try:
            existing = _partition_counts(admin, names)
            missing = [spec for spec in specs if existing[spec.name] is None]
            created = _create(admin, missing, timeout) if missing else set()
            counts = _partition_counts(admin, names)
            for _ in range(verify_attempts - 1):
                if all(count is not None for count in counts.values()):
                    break
                time.sleep(retry_delay)
                counts = _partition_counts(admin, names)
        except KafkaError as exc:
            raise BrokerUnavailable(f"Kafka broker at {bootstrap}: {_one_line(exc)}") from exc
    absent = [name for name, count in counts.items() if count is None]
    if absent:
        raise TopicError(f"topics {', '.join(absent)} are still missing on {bootstrap} after creation")
    return [TopicState(name, counts[name] or 0, name in created) for name in names]


def _create(admin: KafkaAdminClient, specs: Sequence[TopicSpec], timeout: float) -> set[str]:
    """Create `specs`; return the names this call created (not those that already existed)."""
    response = admin.create_topics(
        {s.name: {"num_partitions": s.partitions, "replication_factor": s.replication_factor} for s in specs},
        timeout_ms=int(timeout * 1000),
        raise_errors=False,
    )
    created: set[str] = set()
    for result in response.get("topics", []):
        code = result.get("error_code", _NO_ERROR)
        if code == _NO_ERROR:
            created.add(result["name"])
        elif code != _ALREADY_EXISTS:
            reason = result.get("error_message") or for_code(code).__name__
            raise TopicError(f"cannot create topic {result['name']}: {reason}")
    return created
