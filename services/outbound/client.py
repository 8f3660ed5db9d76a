"""One outbound HTTP request under the destination policy and a deadline (aiohttp).

Why aiohttp, already a dependency, rather than urllib: its connector resolves a name
through a pluggable resolver and then connects to exactly the addresses that resolver
returned (with the name kept for TLS and the Host header). The policy's resolver checks
every address before handing them over, so what was checked is what is connected to, and
a DNS answer that changes between a check and the connection (rebinding) cannot slip
through. An address literal in a URL never reaches a resolver, so `check_url` checks it
before each hop; redirects are followed here, hop by hop, never by the library, so every
hop's scheme and destination is checked again and their number is bounded.

The deadline is one `asyncio.timeout` around everything (resolution, connect, TLS, the
request, headers, the body): a socket timeout bounds each read, so a receiver that sends a
byte a second would otherwise hold a request for ever.

Callers are synchronous (the dispatcher's pool threads, the feed poller, the dashboard),
so `request` runs the coroutine on a private event loop. Errors are classes, not texts:
`ConnectFailed` reads the same whether the port was closed, filtered or slow, so a user
who may choose the URL cannot use the outcome to map the network.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from services.outbound.policy import ALLOWED_SCHEMES, DestinationDenied, OutboundPolicy

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
READ_CHUNK = 64 * 1024

T = TypeVar("T")


class OutboundError(Exception):
    """A request that did not produce a usable response; `str()` is safe to show a user."""


class DeadlineExceeded(OutboundError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")


class ConnectFailed(OutboundError):
    def __init__(self) -> None:
        super().__init__("connection failed or no answer")


class ResponseTooLarge(OutboundError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the response is larger than {limit:,} bytes")


class RedirectRefused(OutboundError):
    """Too many hops, a hop to another scheme than http(s), or a redirect without a Location."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    url: str = ""  # of the last hop
    hops: tuple[str, ...] = field(default=())  # URLs followed before it


class PolicyResolver(AbstractResolver):
    """Resolves like the operating system, then refuses the whole name if any address it
    resolves to is not allowed (a name with one public and one private address is exactly
    what a rebinding attacker serves)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._policy.allows_host(host):
            for result in results:
                self._policy.check_address(result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


def request(
    method: str,
    url: str,
    *,
    policy: OutboundPolicy,
    deadline: float,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = 0,
    max_redirects: int = 0,
) -> Response:
    """Send one request and read at most `max_bytes` of the answer (0: the body is not read),
    all within `deadline` seconds.

    A 3xx with `max_redirects=0` is returned as it is (a POST is never redirected). Raises
    `DestinationDenied`, `DeadlineExceeded`, `ConnectFailed`, `ResponseTooLarge` or
    `RedirectRefused`; never an exception whose text may quote the URL.
    """
    coro = _request(
        method,
        url,
        policy=policy,
        deadline=deadline,
        body=body,
        headers=dict(headers or {}),
        max_bytes=max_bytes,
        max_redirects=max_redirects,
    )
    return _run(coro)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, also from a thread whose own event loop is running (a caller inside one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="outbound-request")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _request(
    method: str,
    url: str,
    *,
    policy: OutboundPolicy,
    deadline: float,
    body: bytes | None,
    headers: dict[str, str],
    max_bytes: int,
    max_redirects: int,
) -> Response:
    try:
        async with asyncio.timeout(deadline):
            return await _exchange(method, url, policy, body, headers, max_bytes, max_redirects)
    except TimeoutError:
        raise DeadlineExceeded(deadline) from None
    except (OutboundError, DestinationDenied):
        raise
    except (aiohttp.ClientError, OSError, ValueError):  # refused, reset, DNS failure, malformed reply
        raise ConnectFailed() from None


async def _exchange(
    method: str,
    url: str,
    policy: OutboundPolicy,
    body: bytes | None,
    headers: dict[str, str],
    max_bytes: int,
    max_redirects: int,
) -> Response:
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), use_dns_cache=False, force_close=True)
    hops: list[str] = []
    async with aiohttp.ClientSession(
        connector=connector, trust_env=False, timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        current = url
        while True:
            policy.check_url(current)
            async with session.request(
                method, current, data=body, headers=headers, allow_redirects=False
            ) as response:
                if response.status in REDIRECT_STATUSES and max_redirects:
                    if len(hops) >= max_redirects:
                        raise RedirectRefused(f"more than {max_redirects} redirects")
                    location = response.headers.get("Location")
                    if not location:
                        raise RedirectRefused(f"HTTP {response.status} without a Location")
                    hops.append(current)
                    current = urljoin(current, location)
                    if urlsplit(current).scheme not in ALLOWED_SCHEMES:
                        raise RedirectRefused("a redirect to another scheme than http(s)")
                    continue
                data = await _read(response, max_bytes) if max_bytes else b""
                return Response(response.status, dict(response.headers), data, current, tuple(hops))


async def _read(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if response.content_length is not None and response.content_length > max_bytes:
        raise ResponseTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ResponseTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
