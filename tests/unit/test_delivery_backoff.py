"""Retry policy of deliveries (pure): which answers are retried, and where a delivery goes
after an attempt. The backoff schedule itself is services.retry's (tests/unit/test_retry.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.delivery.backoff import after_attempt, classify_http_status, classify_smtp_code
from services.retry import RetryPolicy

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, "delivered"), (201, "delivered"), (299, "delivered"), (301, "permanent"), (400, "permanent"),
     (403, "permanent"), (404, "permanent"), (422, "permanent"), (408, "retry"), (425, "retry"),
     (429, "retry"), (500, "retry"), (503, "retry"), (504, "retry")],
)  # fmt: skip
def test_classify_http_status(status: int, verdict: str) -> None:
    assert classify_http_status(status) == verdict


def test_classify_smtp_code() -> None:
    assert [classify_smtp_code(c) for c in (250, 421, 451, 550, 554)] == [
        "delivered",
        "retry",
        "retry",
        "permanent",
        "permanent",
    ]


POLICY = RetryPolicy(max_attempts=3, initial=2.0, max_delay=60.0, jitter=0.5)


def test_after_attempt_transitions() -> None:
    rng = random.Random(0)
    done = after_attempt(verdict="delivered", attempts=1, now=NOW, policy=POLICY, rng=rng)
    assert (done.status, done.next_attempt_at) == ("delivered", None)
    assert after_attempt(verdict="permanent", attempts=1, now=NOW, policy=POLICY).status == "dead"
    retry = after_attempt(verdict="retry", attempts=1, now=NOW, policy=POLICY, rng=rng)
    assert retry.status == "pending"
    assert retry.next_attempt_at is not None
    assert NOW + timedelta(seconds=1) <= retry.next_attempt_at <= NOW + timedelta(seconds=2)
    assert after_attempt(verdict="retry", attempts=2, now=NOW, policy=POLICY).status == "pending"
    assert after_attempt(verdict="retry", attempts=3, now=NOW, policy=POLICY).status == "dead"


def test_retry_after_is_honoured_up_to_the_maximum() -> None:
    rng = random.Random(0)
    longer = after_attempt(verdict="retry", attempts=1, now=NOW, policy=POLICY, retry_after=30, rng=rng)
    assert longer.next_attempt_at == NOW + timedelta(seconds=30)
    capped = after_attempt(verdict="retry", attempts=1, now=NOW, policy=POLICY, retry_after=86_400, rng=rng)
    assert capped.next_attempt_at == NOW + timedelta(seconds=60)
    shorter = after_attempt(verdict="retry", attempts=1, now=NOW, policy=POLICY, retry_after=0.1, rng=rng)
    assert shorter.next_attempt_at is not None and shorter.next_attempt_at >= NOW + timedelta(seconds=1)
