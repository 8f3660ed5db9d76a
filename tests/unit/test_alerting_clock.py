"""The alerter's event clock: event time governs, per partition; the wall clock only closes
the windows of a quiet live stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.alerting import EventClock

T = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # event time of the test streams
WALL = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # a wall clock long after them: a replay
S = timedelta(seconds=1)
M = timedelta(minutes=1)


def clock(**kwargs: object) -> EventClock:
    return EventClock(lateness=2 * M, live_horizon=15 * M, idle_after=30 * S, **kwargs)  # type: ignore[arg-type]


def test_until_is_the_newest_event_minus_lateness_on_the_minute_grid() -> None:
    c = clock()
    assert c.until(WALL) is None
    c.observe(T + 10 * M + 30 * S, now=WALL)
    assert c.until(WALL) == T + 8 * M
    c.observe(T + 5 * M, now=WALL)  # an older story does not move it back
    assert c.until(WALL) == T + 8 * M


def test_a_replay_is_never_advanced_by_the_wall_clock() -> None:
    c = clock()
    c.observe(T, now=WALL)
    assert not c.live(WALL)
    assert c.until(WALL + timedelta(hours=5)) == T - 2 * M


def test_a_quiet_live_stream_is_advanced_by_the_wall_clock_and_stays_live() -> None:
    now = T + 3 * M
    c = clock()
    c.observe(T, now=now)
    assert c.live(now)
    assert c.until(now) == T - 2 * M  # news just arrived: event time
    assert c.until(now + 29 * S) == T - 2 * M  # not quiet yet
    later = now + 31 * S
    assert c.until(later) == T + M  # quiet: the wall clock (T+3:31) minus 2 min, floored
    much_later = now + timedelta(hours=3)
    assert c.live(much_later - timedelta(hours=2, minutes=50))
    for minutes in range(10, 181, 10):  # each tick keeps the quiet stream live
        assert c.until(now + minutes * M) == now + minutes * M - 2 * M


def test_future_timestamps_are_clamped_to_the_wall_clock() -> None:
    c = clock()
    c.observe(T + timedelta(days=365), now=T)
    assert c.newest == T + 2 * M
    assert c.until(T) == T


def test_the_watermark_waits_for_the_slowest_active_partition() -> None:
    c = clock()
    c.assign([0, 1, 2], now=WALL)
    c.observe(T + 60 * M, now=WALL, partition=0)  # a backlog read one partition at a time
    assert c.until(WALL) is None  # partitions 1 and 2 not read yet
    c.observe(T + 10 * M, now=WALL, partition=1)
    c.observe(T + 20 * M, now=WALL, partition=2)
    assert c.until(WALL) == T + 8 * M
    c.observe(T + 40 * M, now=WALL + S, partition=1)
    assert c.until(WALL + S) == T + 18 * M


def test_an_idle_partition_stops_holding_the_others_back() -> None:
    c = clock()
    c.assign([0, 1], now=WALL)
    c.observe(T + 60 * M, now=WALL, partition=0)
    assert c.until(WALL + 29 * S) is None  # partition 1 may still have a backlog
    c.observe(T + 70 * M, now=WALL + 20 * S, partition=0)
    assert c.until(WALL + 31 * S) == T + 68 * M  # partition 1 empty: only partition 0 counts
    c.observe(T + 5 * M, now=WALL + 32 * S, partition=1)  # a late story on it
    assert c.until(WALL + 32 * S) == T + 68 * M  # never back


def test_reassignment_keeps_known_partitions_and_waits_for_new_ones() -> None:
    c = clock()
    c.assign([0], now=WALL)
    c.observe(T, now=WALL, partition=0)
    assert c.until(WALL) == T - 2 * M
    c.assign([0, 1], now=WALL + S)
    c.observe(T + 10 * M, now=WALL + S, partition=0)
    assert c.until(WALL + S) == T - 2 * M  # partition 1 newly assigned, not read yet


def test_no_wall_clock_before_any_assignment_even_if_resumed_live() -> None:
    now = T + 3 * M
    c = clock()
    c.resume(T)  # a checkpoint judged up to T: the stream had reached T + 2 min
    c.assign([], now=now)  # consuming, but the group has not assigned anything yet
    assert c.live(now) and c.until(now) == T  # the backlog may not be fetched yet: no guessing
    assert c.until(now + 10 * M) == T
    c.assign([0], now=now + 10 * M)
    assert c.until(now + 10 * M + 31 * S) == T + 11 * M  # quiet: the partition is empty


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        EventClock(lateness=-S, live_horizon=M)
    with pytest.raises(ValueError):
        EventClock(lateness=S, live_horizon=M, idle_after=timedelta(0))
