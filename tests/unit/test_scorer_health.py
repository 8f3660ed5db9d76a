"""`/health` decided from a snapshot (pure), and the worker's observability web server:
`/metrics` in the Prometheus text format, `/health` with its HTTP status, on a bound socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from services.probes import bind_socket, socket_url
from services.scorer import HealthSnapshot, ScorerMetrics, health_report, health_status
from services.scorer.probe_server import create_web_app

OK = HealthSnapshot(
    model_version="v1",
    assigned=[("news.raw", 2), ("news.raw", 0)],
    last_batch_at=1_700_000_000.25,
    database_retrying=False,
    storage_retries=0,
    items_stored=10,
    dead_letters=1,
    started_at=1_699_999_990.0,
    now=1_700_000_001.0,
)


def test_ok_is_200_with_the_details() -> None:
    report = health_report(OK)
    assert (report.status, report.http_status) == ("ok", 200)
    assert report.body == {
        "status": "ok",
        "model_version": "v1",
        "model_refused": None,
        "assigned_partitions": [{"topic": "news.raw", "partition": 0}, {"topic": "news.raw", "partition": 2}],
        "last_batch_at": "2023-11-14T22:13:20.250+00:00",
        "database": "ok",
        "storage_retries": 0,
        "items_stored": 10,
        "dead_letters": 1,
        "uptime_seconds": 11.0,
    }


def test_a_refused_model_is_reported_but_the_worker_stays_ok() -> None:
    report = health_report(replace(OK, model_refused="v2: weights do not match their manifest hash"))
    assert (report.status, report.http_status) == ("ok", 200)  # still serving v1
    assert report.body["model_version"] == "v1"
    assert report.body["model_refused"].startswith("v2: ")


def test_starting_until_the_first_assignment() -> None:
    report = health_report(replace(OK, assigned=None, last_batch_at=None))
    assert (report.status, report.http_status) == ("starting", 503)
    assert report.body["assigned_partitions"] == []
    assert report.body["last_batch_at"] is None


def test_no_partitions_is_ok() -> None:
    # more workers than partitions: an idle standby is healthy
    assert health_status(replace(OK, assigned=[])) == "ok"


def test_a_database_outage_is_degraded() -> None:
    report = health_report(replace(OK, database_retrying=True, storage_retries=3))
    assert (report.status, report.http_status) == ("degraded", 503)
    assert report.body["database"] == "retrying"
    assert health_status(replace(OK, assigned=None, database_retrying=True)) == "degraded"


# --------------------------------------------------------------------------- the web server

Scenario = Callable[[TestClient], Coroutine[Any, Any, None]]


def serve(metrics: ScorerMetrics, scenario: Scenario) -> None:
    async def main() -> None:
        async with TestClient(TestServer(create_web_app(metrics))) as client:
            await scenario(client)

    asyncio.run(main())


def test_metrics_endpoint() -> None:
    metrics = ScorerMetrics()
    metrics.set_model_version("v7")
    metrics.items.inc(5)

    async def scenario(client: TestClient) -> None:
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}
        assert families["finsent_scorer_items"].samples[0].value == 5
        info = families["finsent_model_info"].samples[0]
        assert (info.labels, info.value) == ({"model_version": "v7"}, 1)

    serve(metrics, scenario)


def test_health_endpoint_follows_the_state() -> None:
    metrics = ScorerMetrics()

    async def scenario(client: TestClient) -> None:
        response = await client.get("/health")
        assert (response.status, (await response.json())["status"]) == (503, "starting")
        metrics.partitions_assigned([("news.raw", 0)])
        response = await client.get("/health")
        body = await response.json()
        assert (response.status, body["status"]) == (200, "ok")
        assert body["assigned_partitions"] == [{"topic": "news.raw", "partition": 0}]
        metrics.storage_retry(1, 0.5, ConnectionError("down"))
        response = await client.get("/health")
        assert (response.status, (await response.json())["database"]) == (503, "retrying")

    serve(metrics, scenario)


def test_bind_socket_port_zero_picks_a_free_port() -> None:
    with bind_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        assert port > 0
        assert socket_url(sock) == f"http://127.0.0.1:{port}"
        with pytest.raises(OSError):  # taken: the worker turns this into one line
            bind_socket("127.0.0.1", port)


def test_bind_socket_refuses_a_foreign_address() -> None:
    with pytest.raises(OSError):
        bind_socket("192.0.2.1", 0)  # TEST-NET-1: never an address of this machine


def test_socket_url_of_ipv6() -> None:
    try:
        sock = bind_socket("::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with sock:
        assert socket_url(sock).startswith("http://[::1]:")
    assert sock.family == socket.AF_INET6
