"""The rule every `news.dlq` producer follows (scorer, alerter): bounded value, header-only
fallback, record rejections told apart from outages whichever Kafka client raised them."""

from __future__ import annotations

import hashlib
from typing import Any

import aiokafka.errors
import kafka.errors
import pytest

from services.broker.dead_letters import (
    H_ORIGINAL_SHA256,
    H_ORIGINAL_SIZE,
    H_TRUNCATED,
    MAX_DEAD_LETTER_KEY_BYTES,
    MAX_DEAD_LETTER_VALUE_BYTES,
    bounded_record,
    header_only_record,
    is_record_rejection,
)
from services.broker.errors import BrokerError

HEADERS = [("error-type", b"invalid_scored_message")]


def test_a_bounded_record_keeps_the_key_and_a_value_up_to_the_limit() -> None:
    at_limit = b"a" * MAX_DEAD_LETTER_VALUE_BYTES
    record = bounded_record(b"k", at_limit, HEADERS)
    assert (record.key, record.value, record.headers) == (b"k", at_limit, HEADERS)
    assert not record.truncated
    cut = bounded_record(b"k", at_limit + b"b", HEADERS)
    assert cut.value == at_limit and cut.truncated
    assert dict(cut.headers)[H_ORIGINAL_SIZE] == str(MAX_DEAD_LETTER_VALUE_BYTES + 1).encode()
    assert HEADERS == [("error-type", b"invalid_scored_message")]  # the caller's list is not changed


def test_the_header_only_fallback_has_no_value_and_no_key_over_one_kib() -> None:
    record = header_only_record(b"k" * (MAX_DEAD_LETTER_KEY_BYTES + 1), b"abc", HEADERS)
    headers = dict(record.headers)
    assert record.value is None and record.key is None and record.truncated
    assert headers[H_TRUNCATED] == b"true" and headers[H_ORIGINAL_SIZE] == b"3"
    assert headers[H_ORIGINAL_SHA256] == hashlib.sha256(b"abc").hexdigest().encode()
    assert headers["error-type"] == b"invalid_scored_message"
    kept = b"k" * MAX_DEAD_LETTER_KEY_BYTES
    assert header_only_record(kept, b"abc", HEADERS).key == kept
    empty = header_only_record(None, None, HEADERS)
    assert (empty.key, empty.value, empty.headers) == (None, None, HEADERS)


@pytest.mark.parametrize("errors", [kafka.errors, aiokafka.errors], ids=["kafka-python", "aiokafka"])
def test_record_rejections_of_either_client_are_told_apart_from_outages(errors: Any) -> None:
    """kafka-python (the alerter's producer) and aiokafka (faust's) have distinct classes
    with the same Kafka error codes; `BrokerError` is how `NewsProducer` wraps them."""
    too_large = errors.MessageSizeTooLargeError("1200191 bytes")
    try:
        raise BrokerError("message too large for news.dlq") from too_large
    except BrokerError as exc:
        wrapped = exc
    assert is_record_rejection(wrapped) and is_record_rejection(too_large)
    assert is_record_rejection(errors.RecordListTooLargeError())
    assert not is_record_rejection(errors.NotLeaderForPartitionError())
    assert not is_record_rejection(errors.KafkaConnectionError("broker down"))
    assert not is_record_rejection(errors.KafkaTimeoutError())
    assert not is_record_rejection(BrokerError("cannot send"))


def test_an_os_error_code_is_not_a_kafka_error_code() -> None:
    assert not is_record_rejection(FileNotFoundError(2, "no such file"))  # errno 2, like CORRUPT_MESSAGE
    assert is_record_rejection(kafka.errors.InvalidRecordError())
