"""One JSON POST with a timeout, no redirects, and the outcome classified for retrying.

urllib rather than aiohttp: the dispatcher is a plain loop with a thread pool, and a
blocking call with a hard timeout is the simplest thing that is correct there. Redirects
are refused because urllib would turn a redirected POST into a GET without the body.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from services.delivery.backoff import classify_http_status
from services.delivery.channels.base import SendResult, one_line

USER_AGENT = "finsent-dispatcher/1"
MAX_ERROR_BODY = 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirect())


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> SendResult:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json; charset=utf-8")
    request.add_header("User-Agent", USER_AGENT)
    for name, value in headers.items():
        request.add_header(name, value)
    try:
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
        return SendResult("retry", None, one_line(f"connection failed: {exc.reason}"))
    except (OSError, ValueError) as exc:  # reset mid-response, malformed reply
        return SendResult("retry", None, one_line(f"{type(exc).__name__}: {exc}"))
    verdict = classify_http_status(status)
    return SendResult(verdict, status, None if verdict == "delivered" else f"HTTP {status}")


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
