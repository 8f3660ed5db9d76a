"""Broker errors with one-line messages, so the CLI can print them as `finsent: error: ...`.

kafka-python raises a zoo of exception types (timeouts, NoBrokersAvailable, per-topic
error codes); callers outside `services.broker` and `services.ingest` only ever see these.
"""

from __future__ import annotations


class BrokerError(RuntimeError):
    """Base class: something about the Kafka-protocol broker went wrong."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached, or did not answer in time."""


class TopicError(BrokerError):
    """A topic could not be created, or does not exist where it must."""


class EmbeddedBrokerError(BrokerError):
    """The embedded Tansu broker is missing or did not come up."""
