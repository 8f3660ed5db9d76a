"""The threaded probe server of the alerter and the dispatcher (services.probes)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from services.probes import ProbeServer, bind_socket


@dataclass
class Report:
    http_status: int
    body: dict[str, Any] = field(default_factory=dict)


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def test_serves_metrics_and_health_until_stopped() -> None:
    registry = CollectorRegistry()
    Counter("finsent_test_things", "Things", registry=registry).inc(3)
    health = Report(503, {"status": "starting"})
    with ProbeServer(bind_socket("127.0.0.1", 0), registry, lambda: health, name="test-probes") as server:
        status, body, content_type = get(f"{server.url}/metrics")
        assert status == 200 and "finsent_test_things_total 3.0" in body.decode()
        assert content_type.startswith("text/plain")
        status, body, _ = get(f"{server.url}/health")
        assert (status, json.loads(body)) == (503, {"status": "starting"})
        health.http_status, health.body = 200, {"status": "ok"}  # read at each request
        assert get(f"{server.url}/health")[0] == 200
        assert get(f"{server.url}/elsewhere")[0] == 404
        url = server.url
    try:
        urllib.request.urlopen(f"{url}/health", timeout=2)
        raise AssertionError("still serving after stop()")
    except (urllib.error.URLError, ConnectionError):
        pass
