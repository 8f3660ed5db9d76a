"""The threaded probe server of the alerter and the dispatcher (services.probes)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from services.probes import HealthReport, ProbeServer, Status, bind_socket, iso_timestamp


def test_the_status_alone_decides_the_http_code() -> None:
    """One contract for every service: a probe needs no per-service rule."""
    statuses: tuple[Status, ...] = ("ok", "standby", "starting", "degraded")
    codes = {status: HealthReport(status, {}).http_status for status in statuses}
    assert codes == {"ok": 200, "standby": 200, "starting": 503, "degraded": 503}


def test_health_times_are_utc_with_milliseconds() -> None:
    assert iso_timestamp(1_700_000_000.25) == "2023-11-14T22:13:20.250+00:00"
    assert iso_timestamp(None) is None


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def test_serves_metrics_and_health_until_stopped() -> None:
    registry = CollectorRegistry()
    Counter("finsent_test_things", "Things", registry=registry).inc(3)
    health = HealthReport("starting", {"status": "starting"})
    with ProbeServer(bind_socket("127.0.0.1", 0), registry, lambda: health, name="test-probes") as server:
        status, body, content_type = get(f"{server.url}/metrics")
        assert status == 200 and "finsent_test_things_total 3.0" in body.decode()
        assert content_type.startswith("text/plain")
        status, body, _ = get(f"{server.url}/health")
        assert (status, json.loads(body)) == (503, {"status": "starting"})
        health = HealthReport("ok", {"status": "ok"})  # read at each request
        assert get(f"{server.url}/health")[0] == 200
        assert get(f"{server.url}/elsewhere")[0] == 404
        url = server.url
    try:
        urllib.request.urlopen(f"{url}/health", timeout=2)
        raise AssertionError("still serving after stop()")
    except (urllib.error.URLError, ConnectionError):
        pass


def test_a_connection_that_never_finishes_its_request_is_shut_down_at_the_deadline() -> None:
    """A thread per connection: without a deadline, a client that sends half a request (or
    a byte now and then) holds its thread for ever."""
    with ProbeServer(
        bind_socket("127.0.0.1", 0),
        CollectorRegistry(),
        lambda: HealthReport("ok", {}),
        name="t",
        deadline=0.5,
    ) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            started = time.monotonic()
            assert slow.recv(100) == b""  # closed by the server (a timeout here raises)
            assert time.monotonic() - started < 3
        assert get(f"{server.url}/health")[0] == 200  # others are served as before


def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    with ProbeServer(
        bind_socket("127.0.0.1", 0),
        CollectorRegistry(),
        lambda: HealthReport("ok", {}),
        name="t",
        deadline=30,
        max_connections=2,
    ) as server:
        host, port = server.url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
        try:
            for conn in held:
                conn.sendall(b"GET /health")
            time.sleep(0.3)  # both accepted and held by their threads
            with socket.create_connection((host, int(port)), timeout=5) as extra:
                assert extra.recv(100) == b""  # refused by closing, not queued behind them
        finally:
            for conn in held:
                conn.close()
        time.sleep(0.3)
        assert get(f"{server.url}/health")[0] == 200  # their slots are free again
