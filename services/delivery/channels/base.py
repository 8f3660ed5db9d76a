"""What every channel promises: `send(message)` returns a `SendResult` and never raises.

A channel that raised would leave the dispatcher unable to record the attempt; so every
failure, including a missing secret, becomes a result with a verdict the retry policy
understands (see services.delivery.backoff).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.delivery.backoff import Verdict
from services.delivery.model import Message


@dataclass(frozen=True, slots=True)
class SendResult:
    verdict: Verdict
    status_code: int | None = None  # HTTP status or SMTP reply code
    error: str | None = None  # one line, for delivery_attempts.error / deliveries.last_error
    retry_after: float | None = None  # seconds, when the receiver said so

    @property
    def ok(self) -> bool:
        return self.verdict == "delivered"


class Channel(Protocol):
    name: str

    def send(self, message: Message) -> SendResult: ...

    def describe(self) -> str:
        """Where it sends, for messages (no secrets)."""
        ...


def one_line(text: object, limit: int = 500) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class MisconfiguredChannel:
    """Stands in for a channel a stored subscription cannot have (a hand-edited row): every
    send fails permanently with the reason, so the delivery goes dead with it on record."""

    name = "misconfigured"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def describe(self) -> str:
        return f"misconfigured ({self.reason})"

    def send(self, message: Message) -> SendResult:
        return SendResult("permanent", None, self.reason)
