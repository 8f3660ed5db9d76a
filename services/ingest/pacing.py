"""When to send each item of a replay: a pure schedule, slept through by `replay`.

`pace` only computes delays, so the pacing rules are tested on lists without sleeping:

- `rate=N`: N items per second, evenly spaced;
- `replay_speed=X`: the gaps between items' `published_at`, divided by X. The replay clock
  only moves forward: an item older than one already sent, or one without a usable
  timestamp, goes out at once;
- neither: as fast as the broker takes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")


def published_at_of(item: Any) -> datetime | None:
    """The item's `published_at` if it is an ISO 8601 string with a zone, else None."""
    value = item.get("published_at") if isinstance(item, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.utcoffset() is not None else None


def pace(
    items: Iterable[T],
    *,
    rate: float | None = None,
    replay_speed: float | None = None,
    timestamp: Callable[[T], datetime | None] = published_at_of,
) -> Iterator[tuple[float, T]]:
    """(seconds to wait before sending, item) for each item, in order; the first waits 0.

    Bad arguments raise `ValueError` here, at the call, not at the first item.
    """
    if rate is not None and replay_speed is not None:
        raise ValueError("choose either a rate or a replay speed, not both")
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be positive, got {rate:g}")
    if replay_speed is not None and not replay_speed > 0:
        raise ValueError(f"replay speed must be positive, got {replay_speed:g}")
    if rate is not None:
        return _by_rate(items, 1.0 / rate)
    if replay_speed is not None:
        return _by_event_time(items, replay_speed, timestamp)
    return ((0.0, item) for item in items)


def _by_rate(items: Iterable[T], interval: float) -> Iterator[tuple[float, T]]:
    for index, item in enumerate(items):
        yield (0.0 if index == 0 else interval), item


def _by_event_time(
    items: Iterable[T], speed: float, timestamp: Callable[[T], datetime | None]
) -> Iterator[tuple[float, T]]:
    clock: datetime | None = None  # the latest event time sent so far
    for item in items:
        stamp = timestamp(item)
        if stamp is None or clock is None or stamp <= clock:
            yield 0.0, item
        else:
            yield (stamp - clock).total_seconds() / speed, item
        if stamp is not None:
            clock = stamp if clock is None else max(clock, stamp)


def sleep_through(
    schedule: Iterable[tuple[float, T]],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[T]:
    """Yield each item when its delay has passed, measured from a fixed start so that the
    time spent sending does not add up to drift. An item that is already late goes at once."""
    due: float | None = None
    for delay, item in schedule:
        now = clock()
        due = now if due is None else due + delay
        if due > now:
            sleep(due - now)
        yield item
