"""`replay`: send the records of a news file to `news.raw`, paced, skipping (and reporting) bad rows.

The I/O shell around `pace`: validation, sleeping and sending happen here; `finsent ingest`
adds a progress bar, and the demo of `finsent run` reuses it for its sample feed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from services.ingest.encoding import EncodedNews, encode_news
from services.ingest.file_source import FileRecord
from services.ingest.pacing import pace, published_at_of, sleep_through
from services.ingest.producer import NewsSender
from services.schemas import InvalidMessage


@dataclass(slots=True)
class ReplayCounts:
    sent: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class _Valid:
    record: FileRecord
    encoded: EncodedNews


def _valid(
    records: Iterable[FileRecord], counts: ReplayCounts, on_skip: Callable[[int, str], None]
) -> Iterator[_Valid]:
    for record in records:
        if record.item is None:
            reason = record.error or "unreadable row"
        else:
            try:
                yield _Valid(record, encode_news(record.item))
                continue
            except InvalidMessage as exc:
                reason = exc.reason
        counts.skipped += 1
        on_skip(record.line, reason)


def replay(
    records: Iterable[FileRecord],
    sender: NewsSender,
    *,
    rate: float | None = None,
    replay_speed: float | None = None,
    on_skip: Callable[[int, str], None] = lambda line, reason: None,
    on_sent: Callable[[str], None] = lambda event_id: None,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayCounts:
    """Validate, pace and send every record, then flush: on return, all sent items are stored.

    Invalid rows are skipped with `on_skip(line, reason)`; they never reach the topic.
    Raises `ValueError` for bad pacing arguments and `BrokerError` if the broker fails.
    """
    counts = ReplayCounts()
    schedule = pace(
        _valid(records, counts, on_skip),
        rate=rate,
        replay_speed=replay_speed,
        timestamp=lambda valid: published_at_of(valid.record.item),
    )
    for valid in sleep_through(schedule, sleep=sleep):
        sender.send_encoded(valid.encoded)
        counts.sent += 1
        on_sent(valid.encoded.event_id)
    sender.flush()
    return counts
