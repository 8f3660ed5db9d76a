"""Which database errors a starting service waits out (services.cli.common.guarded_database)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy.exc import OperationalError

from services.cli.common import database_unreachable, database_wait_policy, guarded_database
from services.retry import backoff_delays, backoff_step

REFUSED = (
    'connection failed: connection to server at "127.0.0.1", port 5433 failed: Connection refused '
    "Is the server running on that host and accepting TCP/IP connections?"
)
MISSING = (
    'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
    'FATAL: database "x" does not exist'
)
AUTH = (
    'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
    "FATAL: password authentication failed"
)


@pytest.mark.parametrize(
    ("message", "unreachable"),
    [
        (REFUSED, True),
        ("server closed the connection unexpectedly", True),
        ("connection failed: timeout expired", True),
        ("FATAL: the database system is starting up", True),
        (MISSING, False),
        (AUTH, False),
    ],
)
def test_only_an_unreachable_server_is_worth_waiting_for(message: str, unreachable: bool) -> None:
    assert database_unreachable(message) is unreachable


def _failing(messages: list[str]):  # type: ignore[no-untyped-def]
    calls = iter(messages)

    def action(url: str) -> str:
        message = next(calls, None)
        if message is None:
            return "head"
        raise OperationalError("SELECT 1", {}, Exception(message))

    return action


def test_an_unreachable_database_is_retried_until_it_answers() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    shown, result = guarded_database(
        _failing([REFUSED] * 6),
        "postgresql://u:secret@h/db",
        wait_seconds=60,
        sleep=sleep,
        clock=lambda: now[0],
        rng=random.Random(7),
    )
    assert result == "head" and "secret" not in shown
    # The pauses are services.retry's, drawn from the same random source: doubling from
    # 0.5 s, capped at 5 s, each shortened by up to half (jitter) so replicas spread out.
    expected = backoff_delays(database_wait_policy(60), random.Random(7))
    assert slept == [next(expected) for _ in range(6)]
    steps = [backoff_step(database_wait_policy(60), n) for n in range(1, 7)]
    assert steps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert all(step / 2 <= pause <= step for pause, step in zip(slept, steps, strict=True))
    assert len(set(slept)) == len(slept)  # jittered, not the bare steps


def test_the_wait_is_bounded_and_a_refusal_is_not_waited_for() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(SystemExit):
        guarded_database(
            _failing([REFUSED] * 100), "postgresql://h/db", wait_seconds=10, sleep=sleep, clock=lambda: now[0]
        )
    assert 5 <= now[0] <= 10
    slept: list[float] = []
    with pytest.raises(SystemExit):
        guarded_database(_failing([AUTH]), "postgresql://h/db", wait_seconds=60, sleep=slept.append)
    assert slept == []
