"""The Kafka-protocol broker: the embedded Tansu process and topic set-up.

Everything here speaks only the Kafka protocol (kafka-python), so it works the same
against the embedded Tansu broker and a real Apache Kafka cluster.
"""

from services.broker.embedded import EmbeddedBroker, find_tansu_binary
from services.broker.errors import BrokerError, BrokerUnavailable, EmbeddedBrokerError, TopicError
from services.broker.topics import (
    TopicSpec,
    TopicState,
    describe_topics,
    ensure_topics,
    pipeline_topics,
    require_topic,
)

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "TopicError",
    "TopicSpec",
    "TopicState",
    "describe_topics",
    "ensure_topics",
    "find_tansu_binary",
    "pipeline_topics",
    "require_topic",
]
