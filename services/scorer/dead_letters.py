"""The `news.dlq` record of one refused `news.raw` record: a bounded value and its headers.

The DLQ format (the rule of every DLQ producer: `services.broker.dead_letters`). Key: the
source record's key. Headers: `services.scorer.batch.dead_letter_headers` (source topic,
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
instead: no value, `truncated: true` and the original size and hash, no key over 1 KiB. A
failure that is not the record's (broker unreachable, not leader, timeouts) ends the worker
unacked as before: the batch is redelivered once the broker is back, and nothing is lost.
The rule is `services.broker.dead_letters`, which the alerter follows too; this module
applies it to the scorer's `DeadLetter`.

Pure functions, no I/O.
"""

from __future__ import annotations

from services.broker.dead_letters import (
    H_ORIGINAL_SHA256,
    H_ORIGINAL_SIZE,
    H_TRUNCATED,
    MAX_DEAD_LETTER_VALUE_BYTES,
    DeadLetterRecord,
    bounded_record,
    header_only_record,
    is_record_rejection,
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


def dead_letter_record(
    dead: DeadLetter, *, max_value_bytes: int = MAX_DEAD_LETTER_VALUE_BYTES
) -> DeadLetterRecord:
    """The DLQ record of `dead` (module docstring): the value as it came, or its first
    `max_value_bytes` with the original's size and hash when it is longer."""
    return bounded_record(
        dead.record.key, dead.record.value, dead_letter_headers(dead), max_value_bytes=max_value_bytes
    )


def header_only(dead: DeadLetter) -> DeadLetterRecord:
    """The fallback DLQ record of `dead` when the broker refused `dead_letter_record(dead)`:
    no value, the original's size and hash in the headers, no key over 1 KiB."""
    return header_only_record(dead.record.key, dead.record.value, dead_letter_headers(dead))
