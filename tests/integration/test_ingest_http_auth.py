"""POST /news authentication against the real embedded broker: without a token, with a wrong
or revoked one, or with a content type other than JSON nothing reaches news.raw (the valid
request that follows is all the one-partition topic holds); a good token is accepted; the
token never appears in any log record, the access log names the token instead."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.broker import EmbeddedBroker
from services.broker.embedded import free_port
from services.ingest import NewsProducer
from services.ingest.http_source import create_app
from services.ingest.token_file import TokenWatcher, add_token, revoke_token

pytestmark = pytest.mark.integration


def news(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"headline": f"{prefix} {i}: $ACME slides", "source": "auth-test"} for i in range(n)]


def test_only_a_valid_token_and_json_get_news_in(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    topic = make_topic()  # one partition: "only the accepted items, in order" is exact
    tokens_file = tmp_path / "ingest-tokens.json"
    good = add_token(tokens_file, "wire-feed")
    revoked = add_token(tokens_file, "old-feed")
    revoke_token(tokens_file, "old-feed")
    watcher = TokenWatcher(tokens_file, check_interval=0.0)
    refused_items = news(3, "refused")
    accepted_items = news(4, "accepted")
    json_type = {"Content-Type": "application/json"}

    async def scenario(producer: NewsProducer) -> tuple[list[tuple[str, int, dict[str, Any]]], Any]:
        app = create_app(producer, tokens=watcher.records, max_body_bytes=100_000)
        client = TestClient(TestServer(app))
        await client.start_server()
        results = []
        try:
            attempts: list[tuple[str, dict[str, str]]] = [
                ("no token", json_type),
                ("wrong token", {**json_type, "Authorization": "Bearer fst_" + "A" * 43}),
                ("revoked token", {**json_type, "Authorization": f"Bearer {revoked}"}),
                ("basic auth", {**json_type, "Authorization": f"Basic {good}"}),
                ("text/plain", {"Content-Type": "text/plain", "Authorization": f"Bearer {good}"}),
                (
                    "form",
                    {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {good}"},
                ),
                (
                    "latin-1",
                    {"Content-Type": "application/json; charset=latin-1", "Authorization": f"Bearer {good}"},
                ),
            ]
            body = json.dumps(refused_items).encode()
            for label, headers in attempts:
                response = await client.post("/news", data=body, headers=headers)
                results.append((label, response.status, dict(response.headers)))
            ok = await client.post(
                "/news",
                data=json.dumps(accepted_items).encode(),
                headers={
                    "Content-Type": "application/json; charset=UTF-8",
                    "Authorization": f"Bearer {good}",
                },
            )
            assert ok.status == 202, await ok.text()
            return results, (await ok.json())["event_ids"]
        finally:
            await client.close()

    with NewsProducer(kafka_broker.bootstrap, topic=topic) as producer:
        results, event_ids = asyncio.run(asyncio.wait_for(scenario(producer), timeout=30))
        assert producer.sent == 4
    statuses = {label: status for label, status, _ in results}
    assert statuses == {
        "no token": 401,
        "wrong token": 401,
        "revoked token": 401,
        "basic auth": 401,
        "text/plain": 415,
        "form": 415,
        "latin-1": 415,
    }
    for _, status, headers in results:
        if status == 401:
            assert headers["WWW-Authenticate"].startswith("Bearer")
    records = consume_topic(topic, expected=4)
    assert [record.key.decode() for record in records] == event_ids  # nothing refused got through

    # The access log: a line per request with the token's name, never the token itself.
    access = [r for r in caplog.records if r.name == "services.ingest.access"]
    assert [(r.__dict__["status"], r.__dict__["token"]) for r in access] == [
        (401, None), (401, None), (401, None), (401, None),
        (415, "wire-feed"), (415, "wire-feed"), (415, "wire-feed"), (202, "wire-feed"),
    ]  # fmt: skip
    assert access[-1].__dict__["items"] == 4 and access[-1].__dict__["bytes"] > 0
    assert access[0].__dict__["bytes"] == 0  # refused before a byte of the body was read
    assert access[-1].__dict__["client"] == "127.0.0.1"
    everything = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (good, revoked):
        assert secret not in everything


def test_revocation_applies_to_a_running_server(
    kafka_broker: EmbeddedBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic()
    tokens_file = tmp_path / "ingest-tokens.json"
    token = add_token(tokens_file, "feed")
    watcher = TokenWatcher(tokens_file, check_interval=0.2)
    headers = {"Authorization": f"Bearer {token}"}

    async def scenario(producer: NewsProducer) -> tuple[int, int]:
        client = TestClient(TestServer(create_app(producer, tokens=watcher.records, max_body_bytes=100_000)))
        await client.start_server()
        try:
            before = (await client.post("/news", json=news(1, "before"), headers=headers)).status
            revoke_token(tokens_file, "feed")
            await asyncio.sleep(0.3)
            after = (await client.post("/news", json=news(1, "after"), headers=headers)).status
            return before, after
        finally:
            await client.close()

    with NewsProducer(kafka_broker.bootstrap, topic=topic) as producer:
        before, after = asyncio.run(asyncio.wait_for(scenario(producer), timeout=30))
        assert producer.sent == 1
    assert (before, after) == (202, 401)


def test_serve_http_process_end_to_end(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Any]],
    tmp_path: Path,
) -> None:
    """The real `finsent serve-http` process: `finsent tokens add` makes the token, the server
    refuses what it must, stores what it may, and its JSON log has the access lines and no token."""
    topic = make_topic()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")},
        "FINSENT_HOME": str(tmp_path),
        "FINSENT_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "FINSENT_TOPIC_NEWS_RAW": topic,
        "FINSENT_LOG_FORMAT": "json",
        "FINSENT_INGEST_HTTP_PORT": str(port),
    }
    finsent = str(Path(sys.executable).with_name("finsent"))
    added = subprocess.run(
        [finsent, "tokens", "add", "desk-1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert added.returncode == 0, added.stderr
    token = added.stdout.splitlines()[0].removeprefix("token: ")
    server = subprocess.Popen(
        [finsent, "serve-http"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()  # blocks until the port is bound (or the process ends)
        assert "listening on" in ready and "1 active token(s)" in ready, (ready, server.poll())

        def post(headers: dict[str, str], items: list[dict[str, Any]]) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("POST", "/news", body=json.dumps(items).encode(), headers=headers)
                return conn.getresponse().status
            finally:
                conn.close()

        good = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        assert post({"Content-Type": "application/json"}, news(1, "anonymous")) == 401
        assert post({**good, "Content-Type": "text/plain"}, news(1, "plain")) == 415
        assert post(good, news(2, "desk")) == 202
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    records = consume_topic(topic, expected=2)
    assert sorted(json.loads(r.value)["headline"] for r in records) == [
        "desk 0: $ACME slides",
        "desk 1: $ACME slides",
    ]
    assert token not in stderr and token not in (added.stderr or "")
    access = [
        line
        for line in map(json.loads, filter(None, stderr.splitlines()))
        if line.get("logger") == "services.ingest.access" or line.get("event") == "http request"
    ]
    assert [(line["status"], line["token"]) for line in access] == [
        (401, None),
        (415, "desk-1"),
        (202, "desk-1"),
    ]
    assert access[-1]["items"] == 2 and access[-1]["client"] == "127.0.0.1"
