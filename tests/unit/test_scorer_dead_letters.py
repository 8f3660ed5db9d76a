"""The DLQ record of a dead letter: bounded value, the original's size and hash when cut."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError
from faust.exceptions import ProducerSendError

from services.scorer import DeadLetter, RawRecord, dead_letter_record, header_only, is_record_rejection
from services.scorer.app import confirm_dead_letter, queue_dead_letter
from services.scorer.dead_letters import (
    H_ORIGINAL_SHA256,
    H_ORIGINAL_SIZE,
    H_TRUNCATED,
    MAX_DEAD_LETTER_VALUE_BYTES,
    DeadLetterRecord,
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


# ------------------------------------------------------------------ the worker's sending of them


class FakeDlq:
    """A DLQ producer that refuses values over `limit` at send time, or fails the delivery of
    values over `ack_limit` (as a broker with a smaller message limit would), or is away."""

    def __init__(self, *, limit: int = 1_000_000, ack_limit: int = 1_000_000, away: bool = False) -> None:
        self.limit, self.ack_limit, self.away = limit, ack_limit, away
        self.acked: list[DeadLetterRecord] = []

    async def send(self, record: DeadLetterRecord) -> Awaitable[None]:
        size = len(record.value or b"")
        if self.away:
            raise ProducerSendError("Error while sending") from KafkaConnectionError("broker down")
        if size > self.limit:
            raise ProducerSendError("Error while sending") from MessageSizeTooLargeError(f"{size} bytes")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if size > self.ack_limit:
            future.set_exception(MessageSizeTooLargeError("the broker refused it"))
        else:
            future.set_result(None)
            self.acked.append(record)
        return future


async def deliver(dlq: FakeDlq, letters: list[DeadLetter]) -> None:
    pending = [(d, await queue_dead_letter(dlq.send, d)) for d in letters]
    for d, delivery in pending:
        await confirm_dead_letter(dlq.send, d, delivery)


def test_the_worker_sends_an_oversized_record_as_its_bounded_prefix() -> None:
    dlq = FakeDlq()
    asyncio.run(deliver(dlq, [dead(b"x" * 1_200_000), dead(b"{}")]))
    assert [len(r.value or b"") for r in dlq.acked] == [MAX_DEAD_LETTER_VALUE_BYTES, 2]
    assert dlq.acked[0].truncated and not dlq.acked[1].truncated


def test_a_dead_letter_refused_at_send_or_by_the_broker_goes_without_its_value() -> None:
    for dlq in (FakeDlq(limit=100), FakeDlq(ack_limit=100)):
        asyncio.run(deliver(dlq, [dead(b"y" * 1_000), dead(b"{}")]))
        acked = {r.value: r for r in dlq.acked}  # a fallback after a refused ack comes later
        assert sorted(acked, key=repr) == sorted([None, b"{}"], key=repr) and len(dlq.acked) == 2
        assert acked[None].truncated and dict(acked[None].headers)[H_ORIGINAL_SIZE] == b"1000"


def test_a_broker_outage_is_not_answered_with_a_fallback_but_raised() -> None:
    with pytest.raises(ProducerSendError):
        asyncio.run(deliver(FakeDlq(away=True), [dead(b"{}")]))
