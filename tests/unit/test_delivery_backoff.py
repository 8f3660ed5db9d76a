"""Retry policy of deliveries (pure)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from services.delivery.backoff import (
    RetryPolicy,
    after_attempt,
    backoff_delay,
    classify_http_status,
    classify_smtp_code,
)

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


def test_backoff_doubles_within_jitter_and_caps() -> None:
    rng = random.Random(0)
    for attempt in range(1, 20):
        step = min(300.0, 2.0 * 2 ** (attempt - 1))
        for _ in range(50):
            delay = backoff_delay(attempt, initial=2.0, maximum=300.0, rng=rng)
            assert step / 2 <= delay <= step
    assert backoff_delay(10_000, initial=2.0, maximum=300.0) <= 300.0  # no overflow


def test_backoff_jitter_spreads_retries() -> None:
    rng = random.Random(1)
    delays = {round(backoff_delay(5, initial=2.0, maximum=300.0, rng=rng), 3) for _ in range(100)}
    assert len(delays) > 90


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(0, initial=1.0, maximum=2.0)


POLICY = RetryPolicy(max_attempts=3, initial_seconds=2.0, max_seconds=60.0)


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


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_seconds=10.0, max_seconds=5.0)
