"""`POST /news`: news items over HTTP (aiohttp), validated as a whole before anything is sent.

All or nothing per request: if any item is invalid the answer is 400 listing every invalid
item (index, reason, error type) and nothing is produced, so a client can fix and resend
the whole request. 202 means every item is acknowledged by the broker; a resend after a
timeout is harmless because items are keyed by event_id.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from services.broker.errors import BrokerError
from services.ingest.encoding import EncodedNews, encode_news
from services.ingest.producer import NewsSender
from services.schemas import InvalidMessage

log = logging.getLogger(__name__)
BROKER_UNAVAILABLE = "the message broker is unavailable; nothing was sent, retry later"

DEFAULT_DELIVERY_TIMEOUT_S = 30.0


class BadRequest(ValueError):
    """The request body as a whole is unusable (not JSON, not an object or a list, empty)."""


@dataclass(frozen=True, slots=True)
class ItemProblem:
    index: int  # 0-based position in the posted list (0 for a single object)
    reason: str
    error_type: str


def parse_batch(
    body: bytes, *, received_at: datetime | None = None
) -> tuple[list[EncodedNews], list[ItemProblem]]:
    """The valid items of a request body, encoded, and a problem for each invalid one (pure)."""
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


def create_app(
    sender: NewsSender,
    *,
    max_body_bytes: int,
    delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT_S,
) -> web.Application:
    """The ingest web app: `POST /news` into `sender`, and `GET /health`."""

    async def post_news(request: web.Request) -> web.Response:
        too_large = _json(413, {"error": f"request body is over the {max_body_bytes:,}-byte limit"})
        if request.content_length is not None and request.content_length > max_body_bytes:
            return too_large
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # a chunked body without Content-Length
            return too_large
        try:
            batch, problems = parse_batch(body)
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
        return _json(202, {"accepted": len(batch), "event_ids": [encoded.event_id for encoded in batch]})

    async def health(_: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post("/news", post_news)
    app.router.add_get("/health", health)
    return app


def serve(app: web.Application, *, host: str, port: int, on_ready: Callable[[], None]) -> None:
    """Serve until Ctrl-C or SIGTERM (then return normally); `on_ready` runs once the port is bound."""
    web.run_app(app, host=host, port=port, print=lambda *_: on_ready(), access_log=None)
