"""POST /news authentication against the real embedded broker: without a token, with a wrong
or revoked one, or with a content type other than JSON nothing reaches news.raw (the valid
request that follows is all the one-partition topic holds); a good token is accepted; the
token never appears in any log record, the access log names the token instead."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.broker import EmbeddedBroker
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
