"""The values delivery works with, free of SQLAlchemy so pure code and tests can build them.

A `Subscription` mirrors a `subscriptions` row, a `Notification` an `alert_outbox` row, and a
`Message` is what one send carries: one notification, or the notifications of a digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from services.alerting import SCOPES, SEVERITIES, SEVERITY_RANK, Scope, Severity

ChannelName = Literal["webhook", "slack", "email", "log"]
CHANNELS: Final[tuple[ChannelName, ...]] = ("webhook", "slack", "email", "log")

__all__ = [
    "CHANNELS",
    "SCOPES",
    "SEVERITIES",
    "SEVERITY_RANK",
    "ChannelName",
    "Message",
    "Notification",
    "Scope",
    "Severity",
    "Subscription",
]


@dataclass(frozen=True, slots=True)
class Subscription:
    """Who hears about which alerts, and how.

    `keys` hold `topic:<name>` and `ticker:<SYMBOL>` entries: the prefix keeps a topic and a
    ticker of the same spelling apart (the topic "IPO" and the ticker IPO).
    """

    name: str
    channel: ChannelName
    target: str
    scopes: tuple[Scope, ...] = ()  # empty: all scopes
    keys: tuple[str, ...] = ()  # empty: every topic and ticker
    min_severity: Severity = "warning"
    secret_ref: str | None = None  # env:NAME or file:/path; never the secret itself
    digest_minutes: int | None = None  # None: immediate
    enabled: bool = True
    id: int | None = None  # None until stored


@dataclass(frozen=True, slots=True)
class Notification:
    """One `alert_outbox` row: the columns are authoritative, `payload` carries the evidence."""

    outbox_id: int
    dedupe_key: str
    alert_key: str
    kind: str  # open | escalate | renotify | reopen | resolve | withdrawn (test: a `subscriptions test`)
    severity: str
    scope: str
    key: str
    at: datetime  # event time of the transition
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """What one send carries; receivers drop a repeat by `idempotency_key`."""

    idempotency_key: str
    subscription: str
    notifications: tuple[Notification, ...]
    digest: bool = False
    test: bool = False
