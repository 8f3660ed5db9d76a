"""`serve-http` under load, on a real server on 127.0.0.1 (its own thread and event loop, as
in production): a big body is parsed off the event loop so /health keeps answering, and
item-count, concurrency and body-time limits hold."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from services.ingest.encoding import EncodedNews
from services.ingest.http_source import create_app
from services.ingest.tokens import TokenRecord, hash_token, new_token

TOKEN = new_token()
TOKENS = [TokenRecord("load-test", hash_token(TOKEN))]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class AcceptingSender:
    """The broker edge is not under test here: every batch is taken at once."""

    def __init__(self) -> None:
        self.items = 0

    def send_encoded(self, encoded: EncodedNews) -> None:
        raise AssertionError("the endpoint must use deliver()")

    def flush(self, timeout: float | None = None) -> None:
        raise AssertionError("the endpoint must use deliver()")

    def deliver(self, batch: Any, *, timeout: float) -> None:
        self.items += len(batch)


@contextmanager
def running(app: web.Application) -> Iterator[int]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def post(port: int, body: bytes, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/news", body=body, headers={"Content-Type": "application/json", **AUTH})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def big_body(items: int) -> bytes:
    return json.dumps(
        [
            {
                "id": f"wire-{n}",
                "headline": f"Oil majors slump as crude plunges, session {n}",
                "body": "Brent fell 4 % after OPEC+ signalled more output.",
                "source": "wire",
            }
            for n in range(items)
        ]
    ).encode()


def test_health_answers_while_a_big_body_is_parsed() -> None:
    body = big_body(45_000)
    assert len(body) > 7_000_000
    sender = AcceptingSender()
    app = create_app(sender, tokens=lambda: TOKENS, max_body_bytes=8_000_000, max_items=50_000)
    with running(app) as port:
        result: dict[str, Any] = {}

        def send() -> None:
            t0 = time.monotonic()
            result["status"] = post(port, body)[0]
            result["seconds"] = time.monotonic() - t0

        poster = threading.Thread(target=send)
        latencies = []
        poster.start()
        time.sleep(0.05)
        while poster.is_alive():
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/health")
            assert conn.getresponse().status == 200
            conn.close()
            latencies.append(time.monotonic() - t0)
            time.sleep(0.02)
        poster.join()
    assert result["status"] == 202 and sender.items == 45_000
    # Before, /health waited for the whole parse (2.2 s on the review's machine): one or two
    # probes got through, one of them as slow as the post. Judged by the 95th percentile and
    # against the post's own duration, so a loaded machine's scheduling hiccup is not a failure.
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    assert len(latencies) >= 10, (latencies, result)
    assert p95 < 0.25, (p95, latencies[-1], result["seconds"])
    assert latencies[-1] < result["seconds"] / 2, (latencies[-1], result["seconds"])


def test_too_many_items_is_413_before_anything_is_sent() -> None:
    sender = AcceptingSender()
    with running(create_app(sender, tokens=lambda: TOKENS, max_body_bytes=8_000_000, max_items=1000)) as port:
        status, answer = post(port, big_body(1001))
        ok, _ = post(port, big_body(1000))
    assert status == 413 and "more than 1,000 items" in answer["error"]
    assert ok == 202 and sender.items == 1000


def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_the_deadline() -> None:
    sender = AcceptingSender()
    app = create_app(
        sender, tokens=lambda: TOKENS, max_body_bytes=8_000_000, max_items=1000, body_timeout=1.0
    )
    with running(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /news HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        sock.sendall(f"Authorization: Bearer {TOKEN}\r\n".encode())
        sock.sendall(b"Content-Length: 1000\r\n\r\n")
        t0 = time.monotonic()
        answer = b""
        sock.settimeout(0.1)
        while not answer and time.monotonic() - t0 < 10:  # a byte every 0.1 s, 10 s at most
            try:
                sock.sendall(b" ")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        took = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert took < 3, took
    assert sender.items == 0


def test_requests_beyond_the_concurrency_limit_are_turned_away() -> None:
    sender = AcceptingSender()
    app = create_app(
        sender,
        tokens=lambda: TOKENS,
        max_body_bytes=8_000_000,
        max_items=1000,
        max_concurrent=2,
        body_timeout=5,
    )
    with running(app) as port:
        held = []
        for _ in range(2):  # two requests whose bodies never finish
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            head = f"POST /news HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            sock.sendall(head.encode() + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[")
            held.append(sock)
        time.sleep(0.3)
        try:
            status, answer = post(port, big_body(1), timeout=5)
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        after, _ = post(port, big_body(1), timeout=5)
    assert status == 503 and "busy" in answer["error"]
    assert after == 202


def _head(sock: socket.socket, headers: str) -> bytes:
    sock.sendall(f"POST /news HTTP/1.1\r\nHost: x\r\n{headers}Expect: 100-continue\r\n\r\n".encode())
    return sock.recv(65536)


def test_expect_continue_is_answered_only_for_a_client_that_may_post() -> None:
    sender = AcceptingSender()
    body = big_body(1)
    length = f"Content-Length: {len(body)}\r\n"
    with running(create_app(sender, tokens=lambda: TOKENS, max_body_bytes=8_000_000)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            refused = _head(sock, f"Content-Type: application/json\r\n{length}")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            wrong_type = _head(sock, f"Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\n{length}")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            go_on = _head(
                sock, f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n{length}"
            )
            sock.sendall(body)
            answer = sock.recv(65536)
    # the refused clients never got a 100 Continue: their bodies stay with them
    assert refused.startswith(b"HTTP/1.1 401") and b"www-authenticate: bearer" in refused.lower()
    assert wrong_type.startswith(b"HTTP/1.1 415")
    assert go_on.startswith(b"HTTP/1.1 100 Continue")
    assert answer.startswith(b"HTTP/1.1 202") and sender.items == 1
