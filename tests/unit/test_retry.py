"""The one retry policy, backoff schedule and `is_retryable` of every service (services.retry,
pure): the scorer's sink, the alerter, the dispatcher's deliveries and its database loop."""

from __future__ import annotations

import itertools
import random

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from services.retry import RetryPolicy, backoff_delay, backoff_delays, is_retryable, retries_exhausted


def take(policy: RetryPolicy, n: int, seed: int = 0) -> list[float]:
    return list(itertools.islice(backoff_delays(policy, random.Random(seed)), n))


# --------------------------------------------------------------------------- the schedule


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(initial=0.5, max_delay=5.0, multiplier=2.0, jitter=0.0)
    assert take(policy, 7) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_backoff_jitter_stays_within_bounds_and_varies() -> None:
    policy = RetryPolicy(initial=1.0, max_delay=8.0, multiplier=2.0, jitter=0.5)
    delays = take(policy, 200)
    bases = [min(8.0, 2.0**n) for n in range(200)]
    assert all(base * 0.5 <= d <= base for d, base in zip(delays, bases, strict=True))
    assert len({round(d, 6) for d in delays[10:]}) > 100  # capped delays still spread out
    assert take(policy, 20, seed=1) == take(policy, 20, seed=1)  # deterministic per rng
    assert take(policy, 20, seed=1) != take(policy, 20, seed=2)


def test_full_jitter_never_negative() -> None:
    delays = take(RetryPolicy(initial=0.1, max_delay=1.0, jitter=1.0), 500)
    assert all(0.0 <= d <= 1.0 for d in delays)


DELIVERY = RetryPolicy(initial=2.0, max_delay=300.0, jitter=0.5)


def test_backoff_doubles_within_jitter_and_caps() -> None:
    rng = random.Random(0)
    for attempt in range(1, 20):
        step = min(300.0, 2.0 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = backoff_delay(DELIVERY, attempt, rng)
            assert step / 2 <= delay <= step
    assert backoff_delay(DELIVERY, 10_000) <= 300.0  # no overflow


def test_backoff_jitter_spreads_retries() -> None:
    rng = random.Random(1)
    delays = {round(backoff_delay(DELIVERY, 5, rng), 3) for _ in range(100)}
    assert len(delays) > 90


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(RetryPolicy(initial=1.0, max_delay=2.0), 0)


def test_the_generator_is_the_stateless_delay_attempt_by_attempt() -> None:
    """A loop counting its own attempts (the sink, the alerter) and a delivery counted in the
    database draw the same delays from the same random source."""
    policy = RetryPolicy(initial=0.3, max_delay=7.0, multiplier=3.0, jitter=0.5)
    rng = random.Random(5)
    assert take(policy, 30, seed=5) == [backoff_delay(policy, n, rng) for n in range(1, 31)]


# --------------------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": 2.0, "max_delay": 1.0},
        {"initial": 10.0, "max_delay": 5.0},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"max_elapsed": -1},
        {"max_attempts": 0},
    ],
)
def test_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_gives_up_on_the_count_or_on_time() -> None:
    counted = RetryPolicy(max_attempts=3)
    assert [retries_exhausted(counted, attempts=n) for n in (1, 2, 3, 4)] == [False, False, True, True]
    timed = RetryPolicy(max_elapsed=10.0)
    assert not retries_exhausted(timed, attempts=1_000, elapsed=10.0)
    assert retries_exhausted(timed, attempts=1, elapsed=10.5)
    forever = RetryPolicy()
    assert not retries_exhausted(forever, attempts=10**9, elapsed=1e9)


# --------------------------------------------------------------------------- what is retried


def _db_error(cls: type[DBAPIError], *, invalidated: bool = False) -> DBAPIError:
    return cls("INSERT …", {}, Exception("server closed the connection"), connection_invalidated=invalidated)


def test_which_errors_are_retried() -> None:
    assert is_retryable(_db_error(OperationalError))
    assert is_retryable(_db_error(DBAPIError, invalidated=True))
    assert not is_retryable(_db_error(DBAPIError))
    assert not is_retryable(_db_error(IntegrityError))
    assert not is_retryable(_db_error(ProgrammingError))
    assert not is_retryable(ValueError("bug"))
