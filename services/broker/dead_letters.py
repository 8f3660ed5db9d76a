"""The headers of a dead letter, and its bounded value: what every `news.dlq` producer
(scorer, alerter) sends in place of a source value too large to re-send whole.

Every dead letter says where it came from (`source-topic`, `-partition`, `-offset`, and
`source-timestamp-ms` when known) and why it failed (`error-class`, `error-type`,
`error-message`); values are UTF-8 bytes, numbers decimal text.

A value of at most `MAX_DEAD_LETTER_VALUE_BYTES` (64 KiB) goes to the DLQ unchanged. A
longer one is cut to its first 64 KiB and three headers describe the original:
`truncated: true`, `original-size` (bytes, decimal) and `original-sha256` (hex). A record
just over a producer's request limit can never be re-sent whole, and a worker that tries
meets the same record after every restart; the prefix, size and hash still let an operator
recognise it and match it against the producer's copy.

Pure functions, no Kafka client.
"""

from __future__ import annotations

import hashlib

MAX_DEAD_LETTER_VALUE_BYTES = 64 * 1024

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
