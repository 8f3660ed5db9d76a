"""Ingest into a real broker: producer round trip, `finsent init` + `finsent ingest`, POST /news,
and the feed poller against a local HTTP server. Messages are counted as consumed, never by
offsets (Tansu's end offsets can be off by a batch)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from typer.testing import CliRunner

from services.broker import EmbeddedBroker, describe_topics
from services.cli import app
from services.ingest import FeedPoller, NewsProducer, encode_news
from services.ingest.http_source import create_app
from services.ingest.tokens import TokenRecord, hash_token, new_token
from services.outbound import OutboundPolicy
from services.settings import get_settings

pytestmark = pytest.mark.integration

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


def news(n: int, *, prefix: str = "item") -> list[dict[str, Any]]:
    return [
        {
            "headline": f"{prefix} {i}: $ACME shares move",
            "source": "test-wire",
            "url": f"https://wire.example/{prefix}/{i}",
            "published_at": f"2025-01-02T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
        }
        for i in range(n)
    ]


def by_key(records: list[Any]) -> dict[str, bytes]:
    return {record.key.decode(): record.value for record in records}


def test_producer_round_trip_keyed_by_event_id(
    kafka_broker: EmbeddedBroker, make_topic: Callable[..., str], consume_topic: Callable[..., list[Any]]
) -> None:
    topic = make_topic("news.raw", partitions=4)
    items = news(200)
    with NewsProducer(kafka_broker.bootstrap, topic=topic) as producer:
        event_ids = [producer.send(item) for item in items]
        producer.flush(timeout=30)
        assert producer.sent == 200
    assert len(set(event_ids)) == 200
    records = consume_topic(topic, expected=200, timeout=40)
    assert len(records) == 200  # exactly: no loss, no duplicates
    received = by_key(records)
    assert set(received) == set(event_ids)
    for event_id, item in zip(event_ids, items, strict=True):
        assert json.loads(received[event_id]) == item
    assert {record.partition for record in records} == {0, 1, 2, 3}  # keys spread over partitions
    # The same key always lands in the same partition (what makes per-item ordering hold).
    assert all(len({r.partition for r in records if r.key == rec.key}) == 1 for rec in records[:10])


def test_send_raw_passes_malformed_bytes_through(
    kafka_broker: EmbeddedBroker, make_topic: Callable[..., str], consume_topic: Callable[..., list[Any]]
) -> None:
    topic = make_topic()
    with NewsProducer(kafka_broker.bootstrap, topic=topic) as producer:
        producer.send_raw(b"\xff not json", "bad-1", headers=[("test", b"yes")])
        producer.send_raw(None, "no-value")  # a record without a value (the scorer must DLQ it)
        producer.send_raw(b"{}", None)  # and one without a key
    records = consume_topic(topic, expected=3)
    assert [(r.key, r.value) for r in records] == [
        (b"bad-1", b"\xff not json"),
        (b"no-value", None),
        (None, b"{}"),
    ]
    assert records[0].headers == [("test", b"yes")]


def test_ingest_producers_batch_for_the_configured_linger(
    kafka_broker: EmbeddedBroker, make_topic: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.cli.ingest import _producer
    from services.ingest.producer import DEFAULT_LINGER_MS

    topic = make_topic()
    with NewsProducer(kafka_broker.bootstrap, topic=topic) as producer:
        assert producer._producer.config["linger_ms"] == DEFAULT_LINGER_MS == 20
    monkeypatch.setenv("FINSENT_INGEST_LINGER_MS", "7")
    get_settings.cache_clear()
    try:
        with _producer(kafka_broker.bootstrap, topic) as producer:
            assert producer._producer.config["linger_ms"] == 7
    finally:
        get_settings.cache_clear()


def cli(args: list[str], **env: str) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, env={**CLEAN_ENV, **env})
    finally:
        get_settings.cache_clear()


def test_finsent_init_then_ingest_a_jsonl_file(
    kafka_broker: EmbeddedBroker,
    consume_topic: Callable[..., list[Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory
    suffix = os.urandom(6).hex()
    env = {
        "FINSENT_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "FINSENT_TOPIC_NEWS_RAW": f"news.raw-{suffix}",
        "FINSENT_TOPIC_NEWS_SCORED": f"news.scored-{suffix}",
        "FINSENT_TOPIC_NEWS_DLQ": f"news.dlq-{suffix}",
        "FINSENT_TOPIC_MODEL_EVENTS": f"model.events-{suffix}",
        "FINSENT_TOPIC_ALERTS": f"alerts-{suffix}",
        "FINSENT_TOPIC_PARTITIONS": "3",
    }
    path = tmp_path / "news.jsonl"
    items = news(30)
    lines = [json.dumps(item) for item in items]
    lines.insert(5, '{"body": "no headline"}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = cli(["ingest", str(path)], **env)  # before `init`: refused, not auto-created
    assert result.exit_code == 2
    assert f"topic news.raw-{suffix} does not exist" in result.stderr and "finsent init" in result.stderr

    result = cli(["init"], **env)
    assert result.exit_code == 0, result.output
    assert f"created news.raw-{suffix}: 3 partition(s)" in result.stdout
    topics = describe_topics(
        kafka_broker.bootstrap,
        [v for k, v in env.items() if k.startswith("FINSENT_TOPIC_") and k != "FINSENT_TOPIC_PARTITIONS"],
    )
    assert topics == {
        f"news.raw-{suffix}": 3,
        f"news.scored-{suffix}": 3,
        f"news.dlq-{suffix}": 3,
        f"model.events-{suffix}": 1,
        f"alerts-{suffix}": 1,
    }
    again = cli(["init"], **env)
    assert again.exit_code == 0 and f"exists  news.raw-{suffix}: 3 partition(s)" in again.stdout

    result = cli(["ingest", str(path), "--rate", "1000"], **env)
    assert result.exit_code == 0, result.output
    assert f"sent 30 items from {path}" in result.stdout and "skipped 1 invalid" in result.stdout
    assert f"{path}:6: skipped: headline is missing" in result.stderr

    records = consume_topic(f"news.raw-{suffix}", expected=30)
    assert len(records) == 30
    assert set(by_key(records)) == {encode_news(item).event_id for item in items}


def test_http_post_lands_valid_items_and_refuses_invalid_ones(
    kafka_broker: EmbeddedBroker, make_topic: Callable[..., str], consume_topic: Callable[..., list[Any]]
) -> None:
    topic = make_topic()  # one partition: total order, so "nothing before the valid items" is exact
    invalid = [{"headline": "valid but in a bad request"}, {"headline": "x", "tickers": "AAPL"}]
    valid = news(5, prefix="http")

    async def scenario(producer: NewsProducer) -> tuple[list[str], dict[str, Any]]:
        token = new_token()
        app = create_app(
            producer, tokens=lambda: [TokenRecord("it", hash_token(token))], max_body_bytes=100_000
        )
        client = TestClient(TestServer(app), headers={"Authorization": f"Bearer {token}"})
        await client.start_server()
        try:
            bad = await client.post("/news", json=invalid)
            assert bad.status == 400
            bad_body = await bad.json()
            good = await client.post("/news", json=valid)
            assert good.status == 202, await good.text()
            return (await good.json())["event_ids"], bad_body
        finally:
            await client.close()

    with NewsProducer(kafka_broker.bootstrap, topic=topic) as producer:
        event_ids, bad_body = asyncio.run(asyncio.wait_for(scenario(producer), timeout=30))
    assert bad_body["invalid"] == [
        {"index": 1, "reason": "tickers must be a list of strings, got a string", "error_type": "wrong_type"}
    ]
    records = consume_topic(topic, expected=5)
    assert [record.key.decode() for record in records] == event_ids  # and nothing else, in order
    assert [json.loads(record.value) for record in records] == valid


@pytest.fixture
def feed_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving `tmp_path`; yields (base URL, directory)."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Local Wire</title>
{items}
</channel></rss>
"""
RSS_ITEM = """<item><title>{title}</title><link>https://local.example/{n}</link>
<guid>local-{n}</guid><pubDate>Thu, 02 Jan 2025 1{n}:00:00 GMT</pubDate></item>"""


def test_feed_poller_sends_entries_once_across_polls(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list[Any]],
    feed_server: tuple[str, Path],
) -> None:
    base_url, directory = feed_server
    topic = make_topic()
    feed = directory / "feed.xml"
    titles = ["Oil slumps as OPEC adds supply", "Fed holds rates", "$AAPL beats"]
    feed.write_text(
        RSS.format(items="\n".join(RSS_ITEM.format(title=t, n=n) for n, t in enumerate(titles[:2])))
    )
    poller = FeedPoller(f"{base_url}/feed.xml", policy=OutboundPolicy.parse("127.0.0.1"))  # local server
    with NewsProducer(kafka_broker.bootstrap, topic=topic) as producer:
        first = poller.poll(producer)
        second = poller.poll(producer)  # same document: nothing new
        feed.write_text(
            RSS.format(items="\n".join(RSS_ITEM.format(title=t, n=n) for n, t in enumerate(titles)))
        )
        third = poller.poll(producer)  # one new entry
        producer.send_raw(b"sentinel", "sentinel")
    assert [(r.fetched, r.sent) for r in (first, second, third)] == [(2, 2), (2, 0), (3, 1)]
    records = consume_topic(topic, until=lambda rs: any(r.key == b"sentinel" for r in rs))
    entries = [json.loads(record.value) for record in records if record.key != b"sentinel"]
    assert [entry["headline"] for entry in entries] == titles  # each exactly once, in order
    assert entries[0] == {
        "headline": titles[0],
        "source": "Local Wire",
        "url": "https://local.example/0",
        "published_at": "2025-01-02T10:00:00+00:00",
    }
