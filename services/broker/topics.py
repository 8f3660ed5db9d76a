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
from kafka.errors import IncompatibleBrokerVersion, KafkaError, TopicAlreadyExistsError, for_code

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


def scalable_topics(settings: Settings) -> list[str]:
    """The topics whose partition count `finsent topics scale` grows: the two the scorer
    workers' consumer groups read and write at volume (news.raw in, news.scored out), where the
    partition count caps how many workers share the stream.

    Not the others: `alerts` stays at one partition so each alert's open, escalation and
    resolution stay in order for every consumer; `model.events` is read by every worker
    without a consumer group (a broadcast: each reads every partition from its end), so more
    partitions add no parallelism, only reordering of a model's announcements; `news.dlq` is
    written rarely and read by a person, not a group.
    """
    return [settings.kafka.topic_news_raw, settings.kafka.topic_news_scored]


@dataclass(frozen=True, slots=True)
class PartitionChange:
    """What `finsent topics scale` does to one topic: grow it, leave it, or refuse."""

    name: str
    before: int | None  # None: the topic does not exist
    target: int

    @property
    def action(self) -> str:
        """ "grow", "unchanged", "shrink" (refused: Kafka cannot remove partitions) or "missing"."""
        if self.before is None:
            return "missing"
        if self.before < self.target:
            return "grow"
        return "unchanged" if self.before == self.target else "shrink"


def plan_partitions(current: dict[str, int | None], target: int) -> list[PartitionChange]:
    """One change per topic in `current` (partition counts from `describe_topics`)."""
    if target < 1:
        raise ValueError(f"partitions must be at least 1, got {target}")
    return [PartitionChange(name, before, target) for name, before in current.items()]


def refusal(changes: Sequence[PartitionChange], bootstrap: str) -> str | None:
    """The one-line reason not to touch any topic, or None if the plan can be applied.

    A plan is applied all or nothing, so a topic that is missing or would shrink stops the
    whole command before any topic grows."""
    missing = [c.name for c in changes if c.action == "missing"]
    if missing:
        return f"topic(s) {', '.join(missing)} do not exist on {bootstrap}; create them with `finsent init`"
    shrink = [c for c in changes if c.action == "shrink"]
    if shrink:
        counts = ", ".join(f"{c.name} has {c.before}" for c in shrink)
        return (
            f"cannot shrink to {shrink[0].target} partition(s): {counts}; Kafka cannot remove partitions "
            "(create new topics under other names and move the consumers to shrink)"
        )
    return None


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


def grow_partitions(
    bootstrap: str,
    changes: Sequence[PartitionChange],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    verify_attempts: int = 10,
    retry_delay: float = 0.3,
    security: KafkaSecurity | None = None,
) -> dict[str, int]:
    """Apply the "grow" changes with Kafka's CreatePartitions; return each topic's count after.

    The caller checks `refusal` first. Metadata can lag behind the change, so the counts are
    read again until every grown topic shows its target (`TopicError` if it never does).
    """
    grow = [c for c in changes if c.action == "grow"]
    names = [c.name for c in changes]
    with admin_client(bootstrap, timeout=timeout, security=security) as admin:
        try:
            if grow:
                _create_partitions(admin, grow, timeout)
            counts = _partition_counts(admin, names)
            for _ in range(verify_attempts - 1):
                if all((counts[c.name] or 0) >= c.target for c in grow):
                    break
                time.sleep(retry_delay)
                counts = _partition_counts(admin, names)
        except KafkaError as exc:
            raise BrokerUnavailable(f"Kafka broker at {bootstrap}: {_one_line(exc)}") from exc
    short = [f"{c.name} ({counts[c.name]})" for c in grow if (counts[c.name] or 0) < c.target]
    if short:
        raise TopicError(f"partitions of {', '.join(short)} did not grow on {bootstrap}")
    return {name: counts[name] or 0 for name in names}


def _create_partitions(admin: KafkaAdminClient, grow: Sequence[PartitionChange], timeout: float) -> None:
    try:
        response = admin.create_partitions(
            {c.name: c.target for c in grow}, timeout_ms=int(timeout * 1000), raise_errors=False
        )
    except IncompatibleBrokerVersion:
        # Tansu (the embedded broker) 0.6 does not offer CreatePartitions (Kafka API key 37).
        raise TopicError(
            "this broker does not support adding partitions (Kafka's CreatePartitions request); "
            "the embedded Tansu broker cannot, Apache Kafka can: create the topics with "
            "`finsent init --partitions N` before the first message instead"
        ) from None
    for name, code, message in partition_errors(response.to_dict()):
        if code != _NO_ERROR:
            reason = message or for_code(code).__name__
            raise TopicError(f"cannot add partitions to topic {name}: {reason}")


def partition_errors(response: dict[str, Any]) -> list[tuple[str, int, str | None]]:
    """(topic, error code, message) of each result in a CreatePartitions response (as a dict)."""
    return [
        (str(r.get("name")), int(r.get("error_code", _NO_ERROR)), r.get("error_message"))
        for r in response.get("results", [])
    ]


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
