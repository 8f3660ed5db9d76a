"""`POST /news`: news items over HTTP (aiohttp), validated as a whole before anything is sent.

All or nothing per request: if any item is invalid the answer is 400 listing every invalid
item (index, reason, error type) and nothing is produced, so a client can fix and resend
the whole request. 202 means every item is acknowledged by the broker; a resend after a
timeout is harmless because items are keyed by event_id.

Limits, because the endpoint faces the network: a body size cap (413), an item-count cap
checked before any item is validated (413), a deadline for receiving the body (408: a
client sending a byte at a time cannot hold a slot for ever), and a cap on requests in
progress at once (503 with Retry-After: their bodies are held in memory). Parsing and
validating a body of tens of thousands of items takes seconds of pure Python, so it runs in
a worker thread: the event loop keeps answering /health and other clients meanwhile
(json.loads itself holds the GIL, a small share of the time).

Who may post: a bearer token from `finsent tokens add` (tokens.py: hashed, compared in
constant time; token_file.py: revocations apply within a second). Checked first, then the
content type: a request without a valid token gets 401 with `WWW-Authenticate: Bearer`, one
that is not `application/json` 415, both before a byte of the body is read and with the
connection closed (so the body is never drained either); a client that asks
`Expect: 100-continue` first gets its 100 only when it may post. Requiring JSON also shuts out the
"simple" cross-site requests a browser sends without a CORS preflight (text/plain forms).

Access log: one structured line per request (logger `services.ingest.access`): client
address, token name, method, path, status, items accepted, body bytes read, duration.
Never the token or the body. /health probes log at DEBUG, everything else at INFO.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from services.broker.errors import BrokerError
from services.ingest.encoding import EncodedNews, encode_news
from services.ingest.producer import NewsSender
from services.ingest.tokens import TokenRecord, bearer_token, match_token
from services.schemas import InvalidMessage

log = logging.getLogger(__name__)
BROKER_UNAVAILABLE = "the message broker is unavailable; nothing was sent, retry later"
access_log = logging.getLogger("services.ingest.access")

DEFAULT_DELIVERY_TIMEOUT_S = 30.0
DEFAULT_MAX_ITEMS = 10_000
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_BODY_TIMEOUT_S = 30.0
PARSE_THREADS = 2


class TooManyItems(ValueError):
    """The body holds more items than one request may."""


class BadRequest(ValueError):
    """The request body as a whole is unusable (not JSON, not an object or a list, empty)."""


@dataclass(frozen=True, slots=True)
class ItemProblem:
    index: int  # 0-based position in the posted list (0 for a single object)
    reason: str
    error_type: str


def parse_batch(
    body: bytes, *, received_at: datetime | None = None, max_items: int | None = None
) -> tuple[list[EncodedNews], list[ItemProblem]]:
    """The valid items of a request body, encoded, and a problem for each invalid one (pure);
    `TooManyItems` before any item is looked at if there are more than `max_items`."""
    try:
        data = json.loads(body.decode("utf-8-sig"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid UTF-8 (at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        items: list[Any] = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise BadRequest("request body must be a JSON object (one item) or a list of objects")
    if not items:
        raise BadRequest("the list is empty: nothing to send")
    if max_items is not None and len(items) > max_items:
        raise TooManyItems(
            f"{len(items):,} items: a request may hold no more than {max_items:,} items; split it"
        )
    now = received_at or datetime.now(UTC)
    valid: list[EncodedNews] = []
    problems: list[ItemProblem] = []
    for index, item in enumerate(items):
        try:
            valid.append(encode_news(item, received_at=now))
        except InvalidMessage as exc:
            problems.append(ItemProblem(index, exc.reason, exc.error_type))
    return valid, problems


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


_REQ_TOKEN = web.RequestKey("token", str)  # the token's name, for the access log
_REQ_ITEMS = web.RequestKey("items", int)
_REQ_BYTES = web.RequestKey("bytes", int)


def _content_type_is_json(request: web.Request) -> bool:
    # aiohttp parses the header: `application/json; charset=utf-8` has content_type
    # application/json; a missing header reads as application/octet-stream.
    return request.content_type == "application/json" and (request.charset or "utf-8").lower() in (
        "utf-8",
        "utf8",
    )


def _unauthorized() -> web.Response:
    response = web.json_response(
        {"error": "a valid bearer token is required: Authorization: Bearer <token> (`finsent tokens add`)"},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="finsent-ingest"'},
    )
    response.force_close()
    return response


def _unsupported_type() -> web.Response:
    response = web.json_response(
        {"error": "Content-Type must be application/json (charset utf-8 or none)"}, status=415
    )
    response.force_close()
    return response


@web.middleware
async def _access_logged(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        level = logging.DEBUG if request.path == "/health" else logging.INFO
        access_log.log(
            level,
            "http request",
            extra={
                "client": request.remote,
                "token": request.get(_REQ_TOKEN),
                "method": request.method,
                "path": request.path,
                "status": status,
                "items": request.get(_REQ_ITEMS, 0),
                "bytes": request.get(_REQ_BYTES, 0),
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )


def create_app(
    sender: NewsSender,
    *,
    tokens: Callable[[], Iterable[TokenRecord]],
    max_body_bytes: int,
    delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT_S,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S,
) -> web.Application:
    """The ingest web app: `POST /news` into `sender` for holders of a token in `tokens()`
    (called per request, so it can follow a changing file), and `GET /health`."""
    parse_pool = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="ingest-parse")
    in_progress = 0

    def refusal(request: web.Request) -> web.Response | None:
        """401 or 415 for a request that may not post; None (and its token's name noted) if it may."""
        name = match_token(bearer_token(request.headers.get("Authorization")), tokens())
        if name is None:
            return _unauthorized()
        request[_REQ_TOKEN] = name
        if not _content_type_is_json(request):
            return _unsupported_type()
        return None

    async def expect_continue(request: web.Request) -> None:
        # A client that asks first (`Expect: 100-continue`, curl does for bodies over 1 KB) is
        # told to send its body only if it may post; otherwise no 100 goes out and the handler
        # answers 401/415 straight away, so the body never leaves the client.
        if refusal(request) is not None:
            return
        if request.headers.get("Expect", "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"unknown Expect: {request.headers.get('Expect')}")
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the 100 is not part of the response's size

    async def post_news(request: web.Request) -> web.StreamResponse:
        nonlocal in_progress
        refused = refusal(request)
        if refused is not None:
            return refused
        if in_progress >= max_concurrent:
            busy = {"error": f"busy: {max_concurrent} requests in progress; retry shortly"}
            return web.json_response(busy, status=503, headers={"Retry-After": "1"})
        in_progress += 1
        try:
            return await _post_news(request)
        finally:
            in_progress -= 1

    async def _post_news(request: web.Request) -> web.StreamResponse:
        too_large = _json(413, {"error": f"request body is over the {max_body_bytes:,}-byte limit"})
        if request.content_length is not None and request.content_length > max_body_bytes:
            return too_large
        try:
            async with asyncio.timeout(body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # a chunked body without Content-Length
            return too_large
        except TimeoutError:
            slow = _json(408, {"error": f"the request body did not arrive within {body_timeout:g} s"})
            slow.force_close()
            return slow
        request[_REQ_BYTES] = len(body)
        try:
            batch, problems = await asyncio.get_running_loop().run_in_executor(
                parse_pool, lambda: parse_batch(body, max_items=max_items)
            )
        except TooManyItems as exc:
            return _json(413, {"error": str(exc)})
        except BadRequest as exc:
            return _json(400, {"error": str(exc)})
        if problems:
            total = len(batch) + len(problems)
            error = f"{len(problems)} of {total} items are invalid; nothing was sent"
            return _json(400, {"error": error, "invalid": [asdict(problem) for problem in problems]})
        loop = asyncio.get_running_loop()
        try:
            # kafka-python blocks; the event loop keeps serving other requests meanwhile.
            await loop.run_in_executor(None, lambda: sender.deliver(batch, timeout=delivery_timeout))
        except BrokerError as exc:  # the details (broker addresses) go to the log, not to the client
            log.warning("POST /news: cannot deliver %d items: %s", len(batch), exc)
            return _json(503, {"error": BROKER_UNAVAILABLE})
        request[_REQ_ITEMS] = len(batch)
        return _json(202, {"accepted": len(batch), "event_ids": [encoded.event_id for encoded in batch]})

    async def health(_: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def stop_parsing(_: web.Application) -> None:
        parse_pool.shutdown(wait=False, cancel_futures=True)

    app = web.Application(client_max_size=max_body_bytes, middlewares=[_access_logged])
    app.on_cleanup.append(stop_parsing)
    app.router.add_post("/news", post_news, expect_handler=expect_continue)
    app.router.add_get("/health", health)
    return app


def serve(app: web.Application, *, host: str, port: int, on_ready: Callable[[], None]) -> None:
    """Serve until Ctrl-C or SIGTERM (then return normally); `on_ready` runs once the port is bound."""
    web.run_app(app, host=host, port=port, print=lambda *_: on_ready(), access_log=None)
