"""One JSON POST with a timeout, no redirects, and the outcome classified for retrying.

urllib rather than aiohttp: the dispatcher is a plain loop with a thread pool, and a
blocking call with a hard timeout is the simplest thing that is correct there. Redirects
are refused because urllib would turn a redirected POST into a GET without the body.

Error messages never contain the URL, nor the text of an exception that may quote it: a
Slack URL is itself a credential, and a URL read from a secret reference is the secret's
value. The messages end up in the deliveries table and on the dashboard.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from services.delivery.backoff import classify_http_status
from services.delivery.channels.base import SendResult, one_line

USER_AGENT = "finsent-dispatcher/1"
MAX_ERROR_BODY = 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirect())


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


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> SendResult:
    if not is_http_url(url):  # a hand-edited row; retrying cannot help
        return SendResult("permanent", None, "the target is not an http(s) URL")
    try:
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("Content-Type", "application/json; charset=utf-8")
        request.add_header("User-Agent", USER_AGENT)
        for name, value in headers.items():
            request.add_header(name, value)
        with _OPENER.open(request, timeout=timeout) as response:
            status = response.status
            response.read(MAX_ERROR_BODY)
    except urllib.error.HTTPError as exc:
        status = exc.code
        try:
            detail = exc.read(MAX_ERROR_BODY).decode("utf-8", "replace")
        except OSError:
            detail = ""
        finally:
            exc.close()
        verdict = classify_http_status(status)
        error = one_line(f"HTTP {status} {exc.reason}: {detail}" if detail else f"HTTP {status} {exc.reason}")
        return SendResult(verdict, status, error, _retry_after(exc.headers.get("Retry-After")))
    except TimeoutError:
        return SendResult("retry", None, f"timed out after {timeout:g} s")
    except urllib.error.URLError as exc:
        return SendResult("retry", None, one_line(f"connection failed: {_reason(exc.reason)}"))
    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset mid-response, malformed reply
        detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else _reason(exc)
        return SendResult("retry", None, one_line(detail))
    verdict = classify_http_status(status)
    return SendResult(verdict, status, None if verdict == "delivered" else f"HTTP {status}")


def _reason(exc: object) -> str:
    """What went wrong, without the exception's text where that text may quote the URL:
    ValueError's and http.client's may (InvalidURL does), socket errors do not."""
    if isinstance(exc, OSError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__} (details withheld: they may quote the URL or a header)"
    return str(exc)  # URLError's string reasons are fixed texts ("no host given")


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
