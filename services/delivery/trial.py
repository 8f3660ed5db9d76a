"""`send_test`: a clearly marked test notification through a subscription's real channel.

One function for `finsent subscriptions test` and the dashboard's "Send test" button, so
both send the same message and describe the outcome in the same words. I/O: it sends.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from services.delivery.channels import build_channel
from services.delivery.model import Subscription
from services.delivery.render import make_test_message
from services.settings import Settings


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """What a test send did: `description` names the channel, `detail` the result."""

    __test__ = False  # not a pytest test class, despite its name

    ok: bool
    description: str  # the channel, e.g. "webhook https://hooks.example/…"
    detail: str  # "delivered (200)", or the failure with its kind and code
    seconds: float


def send_test(sub: Subscription, settings: Settings, *, now: datetime) -> TestOutcome:
    """Send the test message once (no retry: the answer is the point) and classify the result."""
    channel = build_channel(sub, settings)
    message = make_test_message(sub.name, now=now, nonce=uuid.uuid4().hex)
    t0 = time.perf_counter()
    result = channel.send(message)
    took = time.perf_counter() - t0
    code = f" ({result.status_code})" if result.status_code is not None else ""
    if result.ok:
        return TestOutcome(True, channel.describe(), f"delivered{code}", took)
    kind = "permanent failure" if result.verdict == "permanent" else "failed (would be retried)"
    return TestOutcome(False, channel.describe(), f"{kind}{code}: {result.error}", took)
