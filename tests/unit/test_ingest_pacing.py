"""Pacing of file replays: delays computed by `pace` (no sleeping) and slept by `sleep_through`."""

from __future__ import annotations

import pytest

from services.ingest.pacing import pace, published_at_of, sleep_through


def _items(*stamps: str | None) -> list[dict[str, str]]:
    return [
        {"headline": f"h{i}", **({"published_at": stamp} if stamp is not None else {})}
        for i, stamp in enumerate(stamps)
    ]


def _delays(schedule: object) -> list[float]:
    return [round(delay, 9) for delay, _ in schedule]  # type: ignore[attr-defined]


def test_rate_spaces_items_evenly_and_sends_the_first_at_once() -> None:
    items = _items(None, None, None, None)
    schedule = list(pace(items, rate=4))
    assert _delays(schedule) == [0.0, 0.25, 0.25, 0.25]
    assert [item for _, item in schedule] == items


def test_replay_speed_divides_published_at_gaps() -> None:
    items = _items("2025-01-02T10:00:00Z", "2025-01-02T10:00:10Z", "2025-01-02T10:01:10Z")
    assert _delays(pace(items, replay_speed=10)) == [0.0, 1.0, 6.0]
    assert _delays(pace(items, replay_speed=0.5)) == [0.0, 20.0, 120.0]


def test_replay_compares_instants_across_time_zones() -> None:
    items = _items("2025-01-02T10:00:00+00:00", "2025-01-02T12:00:30+02:00")
    assert _delays(pace(items, replay_speed=1)) == [0.0, 30.0]


def test_replay_sends_items_without_a_timestamp_immediately() -> None:
    items = _items(
        None, "2025-01-02T10:00:00Z", None, "2025-01-02T10:00:04Z", "not a date", "2025-01-02T10:00:05"
    )
    # No timestamp, an unparseable one and a naive one (no zone) all go out at once and do not
    # move the replay clock: the gap of the 4th item is measured from the 2nd.
    assert _delays(pace(items, replay_speed=2)) == [0.0, 0.0, 0.0, 2.0, 0.0, 0.0]


def test_replay_clock_never_goes_back() -> None:
    items = _items(
        "2025-01-02T10:00:00Z",
        "2025-01-02T10:05:00Z",
        "2025-01-02T10:03:00Z",  # older than one already sent: at once
        "2025-01-02T10:06:00Z",  # 60 s after the latest sent (10:05), not 180 s after 10:03
        "2025-01-02T10:06:00Z",  # same instant: at once
    )
    assert _delays(pace(items, replay_speed=1)) == [0.0, 300.0, 0.0, 60.0, 0.0]


def test_no_pacing_sends_everything_at_once() -> None:
    items = _items("2025-01-02T10:00:00Z", "2025-01-02T11:00:00Z")
    assert _delays(pace(items)) == [0.0, 0.0]


def test_custom_timestamp_function() -> None:
    rows = [(1, _items("2025-01-02T10:00:00Z")[0]), (2, _items("2025-01-02T10:00:03Z")[0])]
    schedule = list(pace(rows, replay_speed=3, timestamp=lambda row: published_at_of(row[1])))
    assert _delays(schedule) == [0.0, 1.0]
    assert [row[0] for _, row in schedule] == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 5, "replay_speed": 2}, "either a rate or a replay speed"),
        ({"rate": 0}, "rate must be positive"),
        ({"rate": -1}, "rate must be positive"),
        ({"replay_speed": 0}, "replay speed must be positive"),
        ({"rate": float("nan")}, "rate must be positive"),
    ],
)
def test_bad_arguments_fail_at_the_call(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pace([], **kwargs)  # raised before any item is requested


def test_pace_is_lazy() -> None:
    def endless():  # type: ignore[no-untyped-def]
        n = 0
        while True:
            n += 1
            yield {"headline": str(n)}

    schedule = pace(endless(), rate=100)
    assert [next(schedule)[0] for _ in range(3)] == [0.0, 0.01, 0.01]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        self.now += seconds


def test_sleep_through_sleeps_the_delays() -> None:
    fake = FakeClock()
    out = list(
        sleep_through([(0.0, "a"), (0.5, "b"), (0.0, "c"), (1.5, "d")], sleep=fake.sleep, clock=fake.clock)
    )
    assert out == ["a", "b", "c", "d"]
    assert fake.sleeps == [0.5, 1.5]


def test_sleep_through_does_not_drift_when_sending_takes_time() -> None:
    fake = FakeClock()
    sent = []
    for item in sleep_through([(0.0, 1), (1.0, 2), (1.0, 3), (1.0, 4)], sleep=fake.sleep, clock=fake.clock):
        sent.append((item, fake.now))
        fake.now += 0.25  # each send takes 250 ms: the next sleep is shorter, not the schedule longer
    assert [at - 100.0 for _, at in sent] == [0.0, 1.0, 2.0, 3.0]
    assert fake.sleeps == [0.75, 0.75, 0.75]


def test_sleep_through_sends_late_items_at_once() -> None:
    fake = FakeClock()
    for item in sleep_through([(0.0, 1), (1.0, 2), (1.0, 3)], sleep=fake.sleep, clock=fake.clock):
        if item == 1:
            fake.now += 5.0  # a stall (broker slow): items 2 and 3 are overdue
    assert fake.sleeps == []
