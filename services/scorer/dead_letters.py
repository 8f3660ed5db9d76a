"""The `news.dlq` record of one refused `news.raw` record: a bounded value and its headers.

The DLQ format (the value's bound is `services.broker.dead_letters`). Key: the source
record's key. Headers: `services.scorer.batch.dead_letter_headers` (source topic,
partition, offset and timestamp; error class, type and message). Value: the source
record's value unchanged when it is at most `MAX_DEAD_LETTER_VALUE_BYTES` (64 KiB), which
every well-formed message is (`MAX_PAYLOAD_BYTES` is 1,000,000 and a real headline with its
body is a few KiB). A larger value (in practice a `too_large` record) is cut to its first
64 KiB and three more headers describe the original:

    truncated:        "true"
    original-size:    the source value's length in bytes (decimal)
    original-sha256:  the hex SHA-256 of the whole source value

so the dead letter always fits the producer's request limit (faust's default 1,000,000 bytes)
and any broker's message limit, and an operator can still recognise the record, see what it
started with, and match it against the producer's copy. Re-sending the whole value could not
work: a record just over the scorer's limit is also over the producer's, the send failed, the
worker exited without acking and met the same record on every restart.

If the broker still refuses a dead letter for a reason that belongs to that record alone
(`is_record_rejection`: too large, corrupt, invalid), the scorer sends `header_only` of it
instead: no value, `truncated: true` and the original size and hash. A failure that is not the
record's (broker unreachable, not leader, timeouts) ends the worker unacked as before: the
batch is redelivered once the broker is back, and nothing is lost.

Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from services.broker.dead_letters import (
    H_ORIGINAL_SHA256,
    H_ORIGINAL_SIZE,
    H_TRUNCATED,
    MAX_DEAD_LETTER_VALUE_BYTES,
    bounded_value,
    original_headers,
)
from services.scorer.batch import DeadLetter, dead_letter_headers

__all__ = [
    "H_ORIGINAL_SHA256",
    "H_ORIGINAL_SIZE",
    "H_TRUNCATED",
    "MAX_DEAD_LETTER_VALUE_BYTES",
    "DeadLetterRecord",
    "dead_letter_record",
    "header_only",
    "is_record_rejection",
]

_INVALID_RECORD_ERRNO = 87  # INVALID_RECORD: the broker refused this record (Kafka protocol)
_RECORD_ERRORS = (
    CorruptRecordException,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """What is produced to `news.dlq` for one dead letter."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def truncated(self) -> bool:
        return any(name == H_TRUNCATED for name, _ in self.headers)


def dead_letter_record(
    dead: DeadLetter, *, max_value_bytes: int = MAX_DEAD_LETTER_VALUE_BYTES
) -> DeadLetterRecord:
    """The DLQ record of `dead` (module docstring): the value as it came, or its first
    `max_value_bytes` with the original's size and hash when it is longer."""
    value, extra = bounded_value(dead.record.value, max_bytes=max_value_bytes)
    return DeadLetterRecord(dead.record.key, value, dead_letter_headers(dead) + extra)


def header_only(dead: DeadLetter) -> DeadLetterRecord:
    """The fallback DLQ record of `dead` when the broker refused `dead_letter_record(dead)`:
    no value, the original's size and hash in the headers."""
    value = dead.record.value
    headers = dead_letter_headers(dead)
    if value is not None:
        headers += original_headers(value)
    key = dead.record.key if dead.record.key is None or len(dead.record.key) <= 1024 else None
    return DeadLetterRecord(key, None, headers)


def is_record_rejection(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from, e.g. faust's `ProducerSendError`)
    says the broker or the producer refused this one record, as opposed to the broker being
    unavailable: retrying the same record can never succeed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _RECORD_ERRORS) or getattr(current, "errno", None) == _INVALID_RECORD_ERRNO:
            return True
        current = current.__cause__ or current.__context__
    return False
