"""Fetching a feed from real servers on 127.0.0.1: redirects, hardened XML, deadlines, and
feed-URL credentials that must not become the `source` of the news."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.ingest.feed_source import FeedError, FeedPoller, feed_label, fetch_url, parse_feed
from services.outbound import OutboundPolicy

LOCAL = OutboundPolicy.parse("127.0.0.1")  # the test servers are on loopback: allowed explicitly
JSON_FEED = b'[{"id": "1", "title": "Oil majors slump as crude plunges"}]'
Route = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


@contextmanager
def serve(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[Any]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            route = routes.get(self.path.split("?")[0])
            status, headers, body = route(self) if route else (404, {}, b"")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def redirect(location: str) -> Route:
    return lambda handler: (302, {"Location": location}, b"")


def feed(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, JSON_FEED


def test_a_redirect_to_an_address_the_policy_refuses_is_not_followed() -> None:
    with serve({"/internal": feed}, host="127.0.0.2") as (inner_port, inner_hits):
        inner = f"http://127.0.0.2:{inner_port}/internal"
        with serve({"/feed": redirect(inner), "/ok": redirect("/real"), "/real": feed}) as (port, _):
            with pytest.raises(FeedError, match="loopback address is not allowed"):
                fetch_url(f"http://127.0.0.1:{port}/feed", policy=LOCAL)
            assert fetch_url(f"http://127.0.0.1:{port}/ok", policy=LOCAL) == JSON_FEED  # same host: fine
    assert inner_hits == []


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/feed", "gopher://127.0.0.1:70/"])
def test_a_redirect_to_another_scheme_is_refused(location: str) -> None:
    with serve({"/feed": redirect(location)}) as (port, _), pytest.raises(FeedError, match="another scheme"):
        fetch_url(f"http://127.0.0.1:{port}/feed", policy=LOCAL)


def test_redirect_hops_are_bounded() -> None:
    loop = serve({"/loop": redirect("/loop")})
    with loop as (port, hits), pytest.raises(FeedError, match="more than 5 redirects"):
        fetch_url(f"http://127.0.0.1:{port}/loop", policy=LOCAL)
    assert len(hits) == 6


def test_the_feed_host_itself_must_be_allowed() -> None:
    server = serve({"/feed": feed})
    with server as (port, hits), pytest.raises(FeedError, match="loopback address is not allowed"):
        fetch_url(f"http://127.0.0.1:{port}/feed")
    assert hits == []


def _bomb(levels: int) -> str:
    entities = ['<!ENTITY lol0 "lollollollollollollollollollol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels + 1)]
    return (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        f"<!DOCTYPE rss [{''.join(entities)}]>"
        f"<rss><channel><title>t</title><item><guid>1</guid><title>&lol{levels};</title></item>"
        "</channel></rss>"
    )


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_a_utf16_entity_bomb_without_a_bom_is_refused_and_stays_small(encoding: str) -> None:
    document = _bomb(5).encode(encoding)  # 3 MB of text if expanded; the real attack: 100x more
    assert not document.startswith((b"\xff\xfe", b"\xfe\xff"))
    tracemalloc.start()
    try:
        with pytest.raises(FeedError, match="DOCTYPE or entities; refused"):
            parse_feed(document, feed_url="https://evil.example/")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


def test_feed_url_credentials_never_become_the_source() -> None:
    with serve({"/feed.json": feed}) as (port, _):
        url = f"http://reader:hunter2@127.0.0.1:{port}/feed.json?apikey=SECRETKEY&lang=en"
        sent: list[dict[str, Any]] = []

        class Sender:
            def send_encoded(self, encoded: Any) -> None:
                sent.append(encoded)

            def flush(self) -> None:
                return

        poller = FeedPoller(url, policy=LOCAL)
        poller.poll(Sender())  # type: ignore[arg-type]
    assert len(sent) == 1
    text = repr(sent[0])
    assert "hunter2" not in text and "SECRETKEY" not in text and "reader" not in text
    assert f"http://127.0.0.1:{port}/feed.json" in text
    assert feed_label(url) == f"http://127.0.0.1:{port}/feed.json"


def test_feed_errors_do_not_quote_credentials() -> None:
    with serve({}) as (port, _):
        url = f"http://reader:hunter2@127.0.0.1:{port}/missing?token=SECRETKEY"
        with pytest.raises(FeedError) as caught:
            fetch_url(url, policy=LOCAL)
    assert "HTTP 404" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "SECRETKEY" not in str(caught.value)


def test_a_feed_server_dripping_bytes_cannot_hold_a_fetch_past_its_deadline() -> None:
    class Drip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(200):  # 20 s at most
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                return

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(FeedError, match="no complete answer within 1 s"):
            fetch_url(f"http://127.0.0.1:{server.server_address[1]}/feed", timeout=1.0, policy=LOCAL)
        took = time.monotonic() - t0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert took < 2.5, took


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16"])
def test_a_plain_utf16_feed_still_parses(encoding: str) -> None:
    document = (
        '<?xml version="1.0" encoding="UTF-16"?><rss><channel><title>Wire</title>'
        "<item><guid>1</guid><title>Oil majors slump</title></item></channel></rss>"
    ).encode(encoding)
    [entry] = parse_feed(document, feed_url="https://wire.example/rss")
    assert entry.item == {"headline": "Oil majors slump", "source": "Wire"}
