"""One JSON POST under the outbound policy and a deadline, no redirects, the outcome classified.

The request goes through services.outbound (aiohttp): the destination policy is checked
at connect time on the addresses actually connected to, and `timeout` is a deadline for
the whole request, not a per-read socket timeout that a receiver sending a byte a second
never trips. A 3xx is an answer, not a redirect to follow: a redirected POST would need
its body re-sent to a host nobody vetted.

What a user sees (deliveries.last_error, the dashboard's "Send test") is a class of
outcome, never the receiver's words: no response body, no reason phrase, and the same
text whether the connection was refused, reset or never answered, so choosing URLs cannot
map which ports exist behind the dispatcher. Nor does an error quote the URL: a Slack URL
is itself a credential, and a URL read from a secret reference is the secret's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from services.delivery.backoff import classify_http_status
from services.delivery.channels.base import SendResult
from services.outbound import DestinationDenied, OutboundError, OutboundPolicy, request

USER_AGENT = "finsent-dispatcher/1"
PUBLIC_ONLY = OutboundPolicy()


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host, a valid port and no whitespace or control
    characters: checked before urllib sees it, because urllib's own errors quote the URL."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    *,
    policy: OutboundPolicy = PUBLIC_ONLY,
) -> SendResult:
    """POST `body` to `url` within `timeout` seconds in all; never raises."""
    if not is_http_url(url):  # a hand-edited row; retrying cannot help
        return SendResult("permanent", None, "the target is not an http(s) URL")
    all_headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **headers}
    try:
        response = request("POST", url, policy=policy, deadline=timeout, body=body, headers=all_headers)
    except DestinationDenied as exc:  # the operator's policy, not the receiver: retrying cannot help
        return SendResult("permanent", None, str(exc))
    except OutboundError:
        return SendResult("retry", None, no_answer(timeout))
    status = response.status
    verdict = classify_http_status(status)
    if verdict == "delivered":
        return SendResult(verdict, status)
    return SendResult(verdict, status, f"HTTP {status}", _retry_after(response.headers.get("Retry-After")))


def no_answer(timeout: float) -> str:
    """One text for refused, reset, unresolvable and silent receivers alike (see the docstring)."""
    return f"connection failed or no complete answer within {timeout:g} s"


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
