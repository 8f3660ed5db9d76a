"""The DLQ record of a dead letter: bounded value, the original's size and hash when cut."""

from __future__ import annotations

import hashlib

from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError
from faust.exceptions import ProducerSendError

from services.scorer import DeadLetter, RawRecord, dead_letter_record, header_only, is_record_rejection
from services.scorer.dead_letters import (
    H_ORIGINAL_SHA256,
    H_ORIGINAL_SIZE,
    H_TRUNCATED,
    MAX_DEAD_LETTER_VALUE_BYTES,
)


def dead(value: bytes | None, key: bytes | None = b"k") -> DeadLetter:
    record = RawRecord("news.raw", 2, 17, key, value, timestamp_ms=5)
    return DeadLetter(record, "InvalidMessage", "too_large", "message is too large")


def test_a_small_value_goes_to_the_dlq_unchanged_without_truncation_headers() -> None:
    record = dead_letter_record(dead(b'{"headline": 1}'))
    assert record.value == b'{"headline": 1}'
    assert record.key == b"k"
    assert not record.truncated
    names = {name for name, _ in record.headers}
    assert {"error-type", "source-offset"} <= names
    assert not names & {H_TRUNCATED, H_ORIGINAL_SIZE, H_ORIGINAL_SHA256}


def test_a_value_at_the_limit_is_kept_and_one_byte_more_is_cut() -> None:
    at_limit = b"a" * MAX_DEAD_LETTER_VALUE_BYTES
    assert dead_letter_record(dead(at_limit)).value == at_limit
    over = at_limit + b"b"
    record = dead_letter_record(dead(over))
    assert record.value == at_limit
    assert record.truncated


def test_an_oversized_value_keeps_a_prefix_and_the_original_size_and_hash() -> None:
    huge = b"{" + b"x" * 1_200_000
    record = dead_letter_record(dead(huge))
    headers = dict(record.headers)
    assert record.value is not None and len(record.value) == MAX_DEAD_LETTER_VALUE_BYTES
    assert huge.startswith(record.value)
    assert headers[H_TRUNCATED] == b"true"
    assert headers[H_ORIGINAL_SIZE] == b"1200001"
    assert headers[H_ORIGINAL_SHA256] == hashlib.sha256(huge).hexdigest().encode()
    assert headers["error-type"] == b"too_large"


def test_the_header_only_fallback_has_no_value_and_drops_a_huge_key() -> None:
    record = header_only(dead(b"abc", key=b"k" * 5000))
    headers = dict(record.headers)
    assert record.value is None and record.key is None
    assert headers[H_ORIGINAL_SIZE] == b"3"
    assert headers[H_ORIGINAL_SHA256] == hashlib.sha256(b"abc").hexdigest().encode()
    assert header_only(dead(None)).value is None


def test_record_rejections_are_told_apart_from_broker_outages() -> None:
    try:
        try:
            raise MessageSizeTooLargeError("1200191 bytes")
        except MessageSizeTooLargeError as inner:
            raise ProducerSendError("Error while sending") from inner
    except ProducerSendError as exc:
        wrapped = exc
    assert is_record_rejection(wrapped)
    assert is_record_rejection(MessageSizeTooLargeError())
    assert not is_record_rejection(KafkaConnectionError("broker down"))
    assert not is_record_rejection(NotLeaderForPartitionError())
    assert not is_record_rejection(RuntimeError("x"))
