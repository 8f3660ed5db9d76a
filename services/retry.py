"""When to try again: the one retry policy, backoff schedule and `is_retryable` of every service.

The scorer's sink, the alerter's transactions, the dispatcher's deliveries and its database
loop, and a service waiting at start for its database (services.cli.common.guarded_database)
all retry the same way: exponential steps, capped, each shortened by a random
fraction so that many workers (or many deliveries that failed together) do not come back
in lockstep. They differ only in when they give up, and that is a parameter of the policy:

- `max_elapsed` (seconds): a loop that holds the stream while it waits (the scorer's sink)
  gives up on time; None retries for ever, the stream just pauses.
- `max_attempts`: a delivery's attempts are counted in the database and its retries are
  scheduled across cycles and restarts, so it gives up on the count; None: no limit.

Pure and torch-free: no sleeping, no clock, no I/O; the random source is passed in, so
tests draw the same delays twice. The loops that sleep live with their services.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: the pause after failed attempt n is `initial * multiplier**(n-1)`,
    capped at `max_delay` seconds, shortened by a random fraction up to `jitter` (0 = none,
    0.5 = the upper half of the step, 1 = full jitter).

    `max_elapsed` None retries for ever; `max_attempts` None does not count attempts (see the
    module docstring for which service gives up on which)."""

    initial: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_elapsed: float | None = None
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.max_delay < self.initial:
            raise ValueError("need 0 < initial <= max_delay")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")
        if self.max_elapsed is not None and self.max_elapsed < 0:
            raise ValueError("max_elapsed must be >= 0 or None")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")


def backoff_step(policy: RetryPolicy, attempt: int) -> float:
    """The pause after failed attempt `attempt` (1-based) before jitter:
    `min(max_delay, initial * multiplier**(attempt-1))`, without overflow for any attempt."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    if policy.multiplier == 1 or policy.initial == policy.max_delay:
        return policy.initial
    # past the exponent that reaches the cap the power only grows towards an overflow
    to_cap = math.ceil(math.log(policy.max_delay / policy.initial, policy.multiplier)) + 1
    return min(policy.max_delay, policy.initial * policy.multiplier ** min(attempt - 1, to_cap))


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): in
    [step * (1 - jitter), step]. Stateless, for retries counted elsewhere (a delivery's
    attempts are a database column); one `rng.random()` draw per call."""
    step = backoff_step(policy, attempt)
    return step * (1.0 - policy.jitter * (rng or random).random())


def backoff_delays(policy: RetryPolicy, rng: random.Random) -> Iterator[float]:
    """The endless sequence of delays (seconds) before retry 1, 2, 3, …, for a loop that
    counts its own attempts."""
    attempt = 0
    while True:
        attempt += 1
        yield backoff_delay(policy, attempt, rng)


def is_retryable(exc: BaseException) -> bool:
    """True for database errors of the connection (server down, restarting, network, SQLite
    busy, no connection free in the pool), not of the statement: a constraint or SQL error
    is a bug, and trying it again cannot help."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True  # TimeoutError: no connection free in the pool
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


def retries_exhausted(policy: RetryPolicy, *, attempts: int, elapsed: float = 0.0) -> bool:
    """True when no retry may follow `attempts` failed attempts: the count reached
    `max_attempts`, or the retry would begin more than `max_elapsed` seconds after the first
    attempt (`elapsed` includes the pause before it)."""
    if policy.max_attempts is not None and attempts >= policy.max_attempts:
        return True
    return policy.max_elapsed is not None and elapsed > policy.max_elapsed
