"""Subscriptions: validating what a user asks for, and deciding who hears about an alert.

Pure functions, no I/O (the CLI and the dashboard both validate through `build_subscription`).

Filters, all of which must pass (`matches`):

- **severity**: the notification's severity is at least `min_severity`
  (warning < high < critical);
- **scopes**: empty = every scope (market, topic, ticker), else only those listed;
- **keys**: empty = every topic and ticker. Otherwise a topic or ticker alert matches only if
  its key is listed, and market alerts arrive only if `market` is among the scopes: a user
  who names AAPL wants AAPL, not the whole market, unless they say so.

Spelling of keys (`parse_key`): a topic is its exact name from `bert_core.labels.TOPIC_LABELS`
("Energy / Oil"); a ticker is written in upper case (AAPL, BRK.B) or as a cashtag ($aapl) and
is stored upper case, as the ticker extractor stores it. `topic:` / `ticker:` prefixes make
either explicit (`ticker:IPO` is the ticker; plain `IPO` is the topic). Anything else is
refused with the closest topic names as a suggestion, so a typo never silently becomes a
ticker subscription that never fires.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, cast
from urllib.parse import urlsplit

from bert_core import TOPIC_LABELS
from services.delivery.model import (
    CHANNELS,
    SCOPES,
    SEVERITIES,
    SEVERITY_RANK,
    ChannelName,
    Notification,
    Scope,
    Severity,
    Subscription,
)
from services.delivery.render import delivery_key
from services.delivery.secrets import SecretError, parse_secret_ref
from services.outbound.policy import DestinationDenied, OutboundPolicy

PUBLIC_ONLY: Final = OutboundPolicy()

MAX_DIGEST_MINUTES = 24 * 60
DEFAULT_LOG_TARGET = "finsent.alerts"
STDOUT_TARGET = "stdout"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TICKER = re.compile(r"[A-Z][A-Z0-9]{0,5}(?:\.[A-Z]{1,2})?")
_EMAIL = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\".]+")
_LOGGER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class SubscriptionError(ValueError):
    """What is wrong with a subscription, in one line a user can act on."""


def matches(subscription: Subscription, notification: Notification) -> bool:
    """Does `subscription` want to hear about `notification`? (rules in the module docstring)"""
    if not subscription.enabled:
        return False
    if SEVERITY_RANK.get(notification.severity, -1) < SEVERITY_RANK[subscription.min_severity]:
        return False
    if subscription.scopes and notification.scope not in subscription.scopes:
        return False
    if not subscription.keys:
        return True
    if notification.scope == "market":
        return "market" in subscription.scopes
    return key_of(notification.scope, notification.key) in subscription.keys


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """A `deliveries` row to insert: one matched (notification, subscription) pair."""

    outbox_id: int
    subscription_id: int
    idempotency_key: str
    next_attempt_at: datetime


def plan_fan_out(
    notifications: Sequence[Notification], subscriptions: Sequence[Subscription], now: datetime
) -> list[PlannedDelivery]:
    """One delivery per matching (notification, stored subscription), in a stable order."""
    return [
        PlannedDelivery(n.outbox_id, s.id, delivery_key(n.dedupe_key, s.id), first_attempt_at(s, now))
        for n in notifications
        for s in subscriptions
        if s.id is not None and matches(s, n)
    ]


def first_attempt_at(subscription: Subscription, now: datetime) -> datetime:
    """`now` for an immediate subscription; for a digest, the end of the current N-minute
    period on a UTC grid anchored at the epoch, so everything fanned out within one period
    goes out together in one message when it closes."""
    if subscription.digest_minutes is None:
        return now
    period = timedelta(minutes=subscription.digest_minutes)
    return _EPOCH + ((now - _EPOCH) // period + 1) * period


def key_of(scope: str, key: str) -> str:
    """The stored form of a topic or ticker key."""
    return f"ticker:{key.upper()}" if scope == "ticker" else f"{scope}:{key}"


def parse_key(raw: str) -> str:
    """`topic:<name>` or `ticker:<SYMBOL>` for what a user typed (rules in the module docstring)."""
    text = raw.strip()
    prefix, sep, rest = text.partition(":")
    if sep and prefix.lower() == "ticker":
        return _ticker(rest.strip().removeprefix("$").upper(), raw)
    if sep and prefix.lower() == "topic":
        return _topic(rest.strip())
    if text in TOPIC_LABELS:
        return f"topic:{text}"
    if text.startswith("$"):
        return _ticker(text[1:].upper(), raw)
    if _TICKER.fullmatch(text):
        return f"ticker:{text}"
    return _topic(text)


def _ticker(symbol: str, raw: str) -> str:
    if not _TICKER.fullmatch(symbol):
        raise SubscriptionError(f"--key {raw!r}: not a ticker (1-6 letters or digits, optional .CLASS)")
    return f"ticker:{symbol}"


def _topic(name: str) -> str:
    if name in TOPIC_LABELS:
        return f"topic:{name}"
    hint = _topic_suggestion(name)
    raise SubscriptionError(f"--key {name!r}: unknown topic{hint} (a ticker: upper case or $cashtag)")


def _topic_suggestion(name: str) -> str:
    folded = {label.lower(): label for label in TOPIC_LABELS}
    wanted = name.lower().strip()
    if wanted in folded:  # only the case is wrong
        return f"; did you mean {folded[wanted]!r}?"
    close = difflib.get_close_matches(wanted, list(folded), n=2, cutoff=0.5)
    # "energy" or "oil" is a part of "Energy / Oil": a substring is as good a hint as a typo.
    close += [low for low in folded if wanted and wanted in low and low not in close]
    if not close and _TICKER.fullmatch(name.strip().upper()):
        return f"; for the ticker write {name.strip().upper()!r} or '${name.strip()}'"
    if not close:
        return f" (topics: {', '.join(TOPIC_LABELS)})"
    return "; did you mean " + " or ".join(repr(folded[c]) for c in close[:2]) + "?"


def build_subscription(
    *,
    name: str,
    channel: str,
    target: str | None,
    scopes: Iterable[str] = (),
    keys: Iterable[str] = (),
    min_severity: str = "warning",
    secret_ref: str | None = None,
    digest_minutes: int | None = None,
    policy: OutboundPolicy = PUBLIC_ONLY,
) -> Subscription:
    """A validated `Subscription`, or `SubscriptionError` naming the first problem.

    Whether a referenced secret resolves is not checked here: the dispatcher's environment,
    not the shell that adds the subscription, is where it must exist. A URL target must be
    allowed by the outbound `policy` (FINSENT_OUTBOUND_ALLOW) as far as that can be told
    without DNS; a host name is checked by its addresses again at every send.
    """
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise SubscriptionError(
            f"--name {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if channel not in CHANNELS:
        raise SubscriptionError(
            f"--channel {channel!r}: unknown channel; choose one of {', '.join(CHANNELS)}"
        )
    chan = cast(ChannelName, channel)
    if min_severity not in SEVERITIES:
        raise SubscriptionError(
            f"--min-severity {min_severity!r}: unknown severity; choose one of {', '.join(SEVERITIES)}"
        )
    scope_set = set()
    for scope in scopes:
        if scope not in SCOPES:
            raise SubscriptionError(f"--scope {scope!r}: unknown scope; choose from {', '.join(SCOPES)}")
        scope_set.add(scope)
    ordered_scopes = tuple(s for s in SCOPES if s in scope_set)
    parsed_keys = tuple(dict.fromkeys(parse_key(k) for k in keys))
    for key in parsed_keys:
        kind = key.partition(":")[0]
        if ordered_scopes and kind not in ordered_scopes:
            raise SubscriptionError(
                f"--key {key.partition(':')[2]!r} is a {kind} but --scope does not include {kind}"
            )
    if digest_minutes is not None and not 1 <= digest_minutes <= MAX_DIGEST_MINUTES:
        raise SubscriptionError(
            f"--digest-minutes {digest_minutes}: must be between 1 and {MAX_DIGEST_MINUTES} (omit: immediate)"
        )
    if secret_ref is not None:
        try:
            secret_ref = str(parse_secret_ref(secret_ref))
        except SecretError as exc:
            raise SubscriptionError(f"--secret-ref: {exc}") from None
    return Subscription(
        name=name,
        channel=chan,
        target=_check_target(chan, (target or "").strip(), secret_ref, policy),
        scopes=cast(tuple[Scope, ...], ordered_scopes),
        keys=parsed_keys,
        min_severity=cast(Severity, min_severity),
        secret_ref=secret_ref,
        digest_minutes=digest_minutes,
    )


def _check_target(channel: ChannelName, target: str, secret_ref: str | None, policy: OutboundPolicy) -> str:
    if channel == "webhook":
        if secret_ref is None:
            raise SubscriptionError(
                "a webhook needs --secret-ref env:NAME or file:/path: the HMAC key that signs its requests"
            )
        return _check_url(target, policy)
    if channel == "slack":
        # A Slack incoming-webhook URL is itself the credential: it may live behind --secret-ref.
        if secret_ref is not None and not target:
            return f"url in {secret_ref}"
        return _check_url(target, policy)
    if channel == "email":
        if not _EMAIL.fullmatch(target):
            raise SubscriptionError(f"--target {target!r}: not an e-mail address (name@example.com)")
        return target
    target = target or DEFAULT_LOG_TARGET
    if not _LOGGER.fullmatch(target):
        raise SubscriptionError(
            f"--target {target!r}: a log channel's target is a logger name or {STDOUT_TARGET!r}"
        )
    return target


def _check_url(url: str, policy: OutboundPolicy) -> str:
    if not url:
        raise SubscriptionError("--target is required: the URL to POST to")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL": a '[' without its ']'
        raise SubscriptionError(f"--target {redact_url(url)!r}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise SubscriptionError(f"--target {redact_url(url)!r}: not an http(s) URL")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise SubscriptionError(f"--target {redact_url(url)!r}: invalid port") from None
    try:
        policy.check_url(url)
    except DestinationDenied as exc:
        raise SubscriptionError(f"--target {redact_url(url)!r}: {exc}") from None
    return url


def redact_url(url: str) -> str:
    """A URL for tables and messages: no credentials, no query (tokens live there)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL: what precedes its query, without a user part
        head = url.partition("?")[0].partition("#")[0]
        scheme, sep, rest = head.rpartition("://")
        head = f"{scheme}{sep}{rest.rpartition('@')[2]}"
        return head if len(head) <= 40 else head[:40] + "…"
    if not parts.hostname:
        return url if len(url) <= 40 else url[:40] + "…"
    host = parts.hostname + (f":{parts.port}" if _port(parts) else "")
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}"


def _port(parts: object) -> int | None:
    try:
        return getattr(parts, "port", None)
    except ValueError:
        return None


def display_target(subscription: Subscription) -> str:
    """What `subscriptions list` shows; Slack paths are tokens, so they are cut."""
    if subscription.channel == "webhook":
        return redact_url(subscription.target)
    if subscription.channel == "slack":
        if subscription.target.startswith("url in "):
            return subscription.target
        parts = urlsplit(subscription.target)
        return f"{parts.scheme}://{parts.hostname}/…"
    return subscription.target
