"""The headers of a dead letter, its bounded value, and its fallback: the rule every
`news.dlq` producer (scorer, alerter) follows.

Every dead letter says where it came from (`source-topic`, `-partition`, `-offset`, and
`source-timestamp-ms` when known) and why it failed (`error-class`, `error-type`,
`error-message`); values are UTF-8 bytes, numbers decimal text. Its key is the source
record's key.

A value of at most `MAX_DEAD_LETTER_VALUE_BYTES` (64 KiB) goes to the DLQ unchanged. A
longer one is cut to its first 64 KiB and three headers describe the original:
`truncated: true`, `original-size` (bytes, decimal) and `original-sha256` (hex). A record
just over a producer's request limit can never be re-sent whole, and a worker that tries
meets the same record after every restart; the prefix, size and hash still let an operator
recognise it and match it against the producer's copy.

If the producer or the broker still refuses a dead letter for a reason that belongs to that
record alone (`is_record_rejection`: too large, corrupt, invalid), it is sent once more as
`header_only_record`: no value, the original's size and hash, and no key when the source key
is over `MAX_DEAD_LETTER_KEY_BYTES` (1 KiB; a key is an event id of at most a few hundred
bytes, and a longer one may be what made the record too large). A failure that is not the record's (broker
unreachable, not leader, timeouts) is the caller's to raise: its batch is redelivered once
the broker is back.

Pure functions, no Kafka client: Kafka errors are told apart by their protocol error code
(`errno`), which kafka-python's (the alerter) and aiokafka's (faust, the scorer) classes both
carry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAX_DEAD_LETTER_VALUE_BYTES = 64 * 1024
MAX_DEAD_LETTER_KEY_BYTES = 1024

H_SOURCE_TOPIC = "source-topic"
H_SOURCE_PARTITION = "source-partition"
H_SOURCE_OFFSET = "source-offset"
H_SOURCE_TIMESTAMP = "source-timestamp-ms"
H_ERROR_CLASS = "error-class"
H_ERROR_TYPE = "error-type"
H_ERROR_MESSAGE = "error-message"

H_TRUNCATED = "truncated"
H_ORIGINAL_SIZE = "original-size"
H_ORIGINAL_SHA256 = "original-sha256"

# Kafka protocol error codes that refuse one record: CORRUPT_MESSAGE, MESSAGE_TOO_LARGE (also
# what both clients raise for a record over their own request limit), RECORD_LIST_TOO_LARGE,
# INVALID_RECORD. Retrying the same record can never succeed.
_RECORD_ERRNOS = frozenset({2, 10, 18, 87})


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """What is produced to `news.dlq` for one dead letter."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def truncated(self) -> bool:
        return any(name == H_TRUNCATED for name, _ in self.headers)


def bounded_record(
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    *,
    max_value_bytes: int = MAX_DEAD_LETTER_VALUE_BYTES,
) -> DeadLetterRecord:
    """The DLQ record of a source record (`key`, `value`) with its dead-letter `headers`:
    the value as it came, or its first `max_value_bytes` with the original's size and hash."""
    bounded, extra = bounded_value(value, max_bytes=max_value_bytes)
    return DeadLetterRecord(key, bounded, [*headers, *extra])


def header_only_record(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> DeadLetterRecord:
    """The fallback DLQ record when the broker refused `bounded_record(key, value, headers)`:
    no value, the original's size and hash in the headers, the key only up to 1 KiB."""
    extra = original_headers(value) if value is not None else []
    kept = key if key is None or len(key) <= MAX_DEAD_LETTER_KEY_BYTES else None
    return DeadLetterRecord(kept, None, [*headers, *extra])


def bounded_value(
    value: bytes | None, *, max_bytes: int = MAX_DEAD_LETTER_VALUE_BYTES
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """`value` as the DLQ carries it, and the headers to add: none when it fits in `max_bytes`,
    else its prefix with `original_headers(value)`."""
    if value is None or len(value) <= max_bytes:
        return value, []
    return bytes(value[:max_bytes]), original_headers(value)


def original_headers(value: bytes) -> list[tuple[str, bytes]]:
    """The headers that describe a value the dead letter does not carry whole."""
    return [
        (H_TRUNCATED, b"true"),
        (H_ORIGINAL_SIZE, str(len(value)).encode()),
        (H_ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode()),
    ]


def is_record_rejection(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from, e.g. faust's `ProducerSendError` or
    `services.broker.errors.BrokerError`) says the broker or the producer refused this one
    record, as opposed to the broker being unavailable: retrying the same record can never
    succeed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # an OSError's errno is the system's (2 is ENOENT), not Kafka's
        if not isinstance(current, OSError) and getattr(current, "errno", None) in _RECORD_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False
