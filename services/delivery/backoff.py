"""Retry policy of deliveries: which failures are worth retrying, and when. Pure functions.

Receivers that are down or overloaded recover on their own, so 5xx, 408, 429, timeouts and
connection errors are retried with exponential backoff; a 4xx says the request itself is
wrong (bad URL, revoked hook, rejected signature) and sending it again cannot help, so the
delivery is dead at once and an operator sees it instead of eight identical failures.

The schedule is the shared `services.retry` policy with jitter 0.5, which keeps many
deliveries that failed together (a receiver outage) from retrying in lockstep: each pause
is drawn uniformly from the upper half of its exponential step. A delivery gives up on its
attempt count (`RetryPolicy.max_attempts`, kept in the database across cycles and
restarts), not on time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.retry import RetryPolicy, backoff_delay, retries_exhausted

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
    if verdict == "permanent" or retries_exhausted(policy, attempts=attempts):
        return Transition("dead", None)
    delay = backoff_delay(policy, attempts, rng)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, policy.max_delay)
    return Transition("pending", now + timedelta(seconds=delay))
