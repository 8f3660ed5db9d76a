"""When may the alerter judge a minute: the event-time watermark and the idle tick.

Pure (the wall clock is an argument). Event time governs: the watermark is the event time
the stream has reached, and every bucket that ends at least the allowed lateness before it
may be judged (`until`). Stragglers later than that are late stories, which the alerter
absorbs by re-running detection from an earlier checkpoint.

Per partition. `news.scored` has several partitions, each in event-time order only
roughly, and while the alerter catches up on a backlog (a restart, a replay of a day) the
client hands it one partition's records for a while before the next one's. A watermark
taken as the newest time of any partition would then run hours ahead of the partitions
not read yet and make all of their stories late (and those past the checkpoint retention
unjudgeable). So the watermark is the *minimum* over the assigned partitions of the newest
time each has delivered, as in Kafka Streams and Flink. A partition that delivers nothing
for `idle_after` (wall clock) is caught up or empty and stops holding the others back; a
newly assigned one holds them back until it delivers or goes idle. Without partition
information (`assign` never called) the newest time seen is the watermark.

Why the wall clock is allowed in at all: when a live stream goes quiet (a night, a feed
outage) no story moves the watermark, so the last windows would never close and an open
alert would never resolve. So when no partition has delivered anything for `idle_after`
(quiet) and the stream is *live* — its newest story no older than `live_horizon` by the
wall clock — the watermark is advanced to the wall clock, exactly as if a story stamped
"now" had arrived; while it stays quiet each tick keeps it live. Only when quiet: while
stories flow, even a live stream's backlog (after a restart) is read by event time, so
the partitions not read yet are not made late. A replay of older news is never live, so
what it raises depends on its event times alone, and replaying it again gives the same
alerts. A live stream's alerts are the same as well: a story arriving after the wall
clock moved on is just a late story.

Timestamps from the future are clamped to `now + lateness` before they count: one story
stamped a year ahead would otherwise push the watermark a year ahead and make every real
story "too late" to be judged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.alerting.buckets import DEFAULT_WIDTH, bucket_start


@dataclass(slots=True)
class _Partition:
    assigned_at: datetime
    newest: datetime | None = None  # newest event time it delivered
    last_message_at: datetime | None = None  # wall clock


@dataclass(slots=True)
class EventClock:
    """The alerter's watermark. Mutable: one per alerter process."""

    lateness: timedelta
    live_horizon: timedelta
    width: timedelta = DEFAULT_WIDTH
    idle_after: timedelta = timedelta(seconds=30)
    newest: datetime | None = None  # newest event time known (or the wall clock while live)
    watermark: datetime | None = None  # event time the stream has reached; never moves back
    _partitions: dict[int, _Partition] = field(default_factory=dict, init=False, repr=False)
    _assigned: bool = field(default=False, init=False, repr=False)  # assign() called: partitions known
    _last_message_at: datetime | None = field(default=None, init=False, repr=False)  # any partition

    def __post_init__(self) -> None:
        if self.lateness < timedelta(0) or self.live_horizon <= timedelta(0):
            raise ValueError("lateness must not be negative and live_horizon must be positive")
        if self.idle_after <= timedelta(0):
            raise ValueError("idle_after must be positive")

    def assign(self, partitions: Iterable[int], *, now: datetime) -> None:
        """The consumer's whole new assignment; partitions kept keep what they delivered."""
        wanted = set(partitions)
        self._assigned = True
        self._partitions = {
            p: self._partitions[p] if p in self._partitions else _Partition(assigned_at=now) for p in wanted
        }

    def observe(self, published_at: datetime, *, now: datetime, partition: int | None = None) -> None:
        """A story was consumed (from `partition`; `now`: the wall clock)."""
        event_time = min(published_at, now + self.lateness)
        if self.newest is None or event_time > self.newest:
            self.newest = event_time
        self._last_message_at = now
        state = self._partitions.get(partition) if partition is not None else None
        if state is not None:
            if state.newest is None or event_time > state.newest:
                state.newest = event_time
            state.last_message_at = now

    def resume(self, evaluated_until: datetime) -> None:
        """After a restart: the checkpoint's `evaluated_until` means the stream had reached at
        least `evaluated_until + lateness`, which also says whether it was live."""
        reached = evaluated_until + self.lateness
        if self.newest is None or reached > self.newest:
            self.newest = reached
        if self.watermark is None or reached > self.watermark:
            self.watermark = reached

    def live(self, now: datetime) -> bool:
        return self.newest is not None and now - self.newest <= self.live_horizon

    def _reached(self, now: datetime) -> datetime | None:
        """The event time every active partition has reached; None while one has not been read."""
        if not self._partitions:
            return self.newest
        reached: list[datetime] = []
        for state in self._partitions.values():
            quiet_since = state.last_message_at or state.assigned_at
            if now - quiet_since >= self.idle_after:
                continue  # caught up, or empty: it holds nobody back
            if state.newest is None:
                return None  # assigned, not delivered yet: wait for it
            reached.append(state.newest)
        return min(reached) if reached else self.newest

    def quiet(self, now: datetime) -> bool:
        """No news for `idle_after`: every assigned partition idle (none assigned yet: not
        quiet, the backlog may not have been fetched)."""
        if self._assigned:
            return bool(self._partitions) and all(
                now - (p.last_message_at or p.assigned_at) >= self.idle_after
                for p in self._partitions.values()
            )
        return self._last_message_at is None or now - self._last_message_at >= self.idle_after

    def until(self, now: datetime) -> datetime | None:
        """The bucket boundary up to which windows may be judged now; None before any story.
        It never moves back."""
        reached = self._reached(now)
        if reached is not None and (self.watermark is None or reached > self.watermark):
            self.watermark = reached
        if self.quiet(now) and self.live(now) and self.newest is not None and now > self.newest:
            self.newest = now  # the idle tick: a quiet live stream stays live, its clock runs
            if self.watermark is None or now > self.watermark:
                self.watermark = now
        if self.watermark is None:
            return None
        return bucket_start(self.watermark - self.lateness, self.width)
