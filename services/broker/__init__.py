"""The Kafka-protocol broker: the embedded Tansu process and topic set-up.

Everything here speaks only the Kafka protocol (kafka-python), so it works the same
against the embedded Tansu broker and a real Apache Kafka cluster. `clients` is the one place
Kafka clients are built, with the TLS/SASL options `security` derives from the settings.
"""

from services.broker.clients import (
    configured_security,
    faust_app,
    kafka_admin,
    kafka_consumer,
    kafka_producer,
)
from services.broker.embedded import EmbeddedBroker, find_tansu_binary
from services.broker.errors import BrokerError, BrokerUnavailable, EmbeddedBrokerError, TopicError
from services.broker.security import PLAINTEXT, KafkaSecurity, KafkaSecurityError
from services.broker.topics import (
    PartitionChange,
    TopicSpec,
    TopicState,
    describe_topics,
    ensure_topics,
    grow_partitions,
    pipeline_topics,
    plan_partitions,
    refusal,
    require_topic,
    scalable_topics,
)

__all__ = [
    "PLAINTEXT",
    "BrokerError",
    "BrokerUnavailable",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "KafkaSecurity",
    "KafkaSecurityError",
    "PartitionChange",
    "TopicError",
    "TopicSpec",
    "TopicState",
    "configured_security",
    "describe_topics",
    "ensure_topics",
    "faust_app",
    "find_tansu_binary",
    "grow_partitions",
    "kafka_admin",
    "kafka_consumer",
    "kafka_producer",
    "pipeline_topics",
    "plan_partitions",
    "refusal",
    "require_topic",
    "scalable_topics",
]
