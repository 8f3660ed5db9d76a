"""Retry policy of deliveries: which failures are worth retrying, and when. Pure functions.

Receivers that are down or overloaded recover on their own, so 5xx, 408, 429, timeouts and
connection errors are retried with exponential backoff; a 4xx says the request itself is
wrong (bad URL, revoked hook, rejected signature) and sending it again cannot help, so the
delivery is dead at once and an operator sees it instead of eight identical failures.

Jitter keeps many deliveries that failed together (a receiver outage) from retrying in
lockstep: each pause is drawn uniformly from the upper half of its exponential step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Verdict = Literal["delivered", "retry", "permanent"]
DeliveryStatus = Literal["pending", "delivered", "dead"]

RETRYABLE_4XX = frozenset({408, 425, 429})


def classify_http_status(status: int) -> Verdict:
    """2xx delivered; 408/425/429 and 5xx retried; other statuses (4xx, and 3xx: a redirect
    is not followed, a POST must not silently turn into a GET) are permanent failures."""
    if 200 <= status < 300:
        return "delivered"
    if status in RETRYABLE_4XX or status >= 500:
        return "retry"
    return "permanent"


def classify_smtp_code(code: int) -> Verdict:
    """SMTP's own convention: 2xx accepted, 4xx transient, 5xx permanent."""
    if 200 <= code < 300:
        return "delivered"
    if 400 <= code < 500:
        return "retry"
    return "permanent"


def backoff_delay(attempt: int, *, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): in
    [step/2, step] with step = min(maximum, initial * 2**(attempt-1))."""
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    step = min(maximum, initial * 2.0 ** min(attempt - 1, 60))
    return step / 2 + (rng or random).uniform(0.0, step / 2)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_seconds: float = 2.0
    max_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_seconds <= 0 or self.max_seconds < self.initial_seconds:
            raise ValueError("need max_attempts >= 1 and 0 < initial_seconds <= max_seconds")


@dataclass(frozen=True, slots=True)
class Transition:
    """A delivery's state after an attempt."""

    status: DeliveryStatus
    next_attempt_at: datetime | None  # set when status is pending


def after_attempt(
    *,
    verdict: Verdict,
    attempts: int,
    now: datetime,
    policy: RetryPolicy,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> Transition:
    """Where a delivery goes after its `attempts`-th attempt ended with `verdict`.

    A receiver's Retry-After is honoured when it asks for longer than the backoff, up to
    the policy's maximum (a hostile or broken header cannot park a delivery for days).
    """
    if verdict == "delivered":
        return Transition("delivered", None)
    if verdict == "permanent" or attempts >= policy.max_attempts:
        return Transition("dead", None)
    delay = backoff_delay(attempts, initial=policy.initial_seconds, maximum=policy.max_seconds, rng=rng)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, policy.max_seconds)
    return Transition("pending", now + timedelta(seconds=delay))
