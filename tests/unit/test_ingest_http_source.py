"""`POST /news` against a fake producer: validation, all-or-nothing, status codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.broker.errors import BrokerUnavailable
from services.ingest.encoding import EncodedNews
from services.ingest.http_source import BadRequest, create_app, parse_batch
from services.ingest.tokens import TokenRecord, hash_token, new_token
from services.schemas import derive_event_id


class FakeSender:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[EncodedNews]] = []
        self.fail = fail

    def send_encoded(self, encoded: EncodedNews) -> None:
        raise AssertionError("the endpoint must use deliver()")

    def flush(self, timeout: float | None = None) -> None:
        raise AssertionError("the endpoint must use deliver()")

    def deliver(self, batch: Any, *, timeout: float) -> None:
        if self.fail:
            raise BrokerUnavailable("Kafka broker at 127.0.0.1:1 is not reachable")
        self.batches.append(list(batch))


Scenario = Callable[[TestClient], Coroutine[Any, Any, None]]
TOKEN = new_token()
TOKENS = [TokenRecord("unit-test", hash_token(TOKEN))]


def run(sender: FakeSender, scenario: Scenario, *, max_body_bytes: int = 100_000) -> None:
    async def main() -> None:
        app = create_app(sender, tokens=lambda: TOKENS, max_body_bytes=max_body_bytes)
        client = TestClient(
            TestServer(app),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        await client.start_server()
        try:
            await asyncio.wait_for(scenario(client), timeout=20)
        finally:
            await client.close()

    asyncio.run(main())


def test_post_a_list_is_accepted_and_delivered_in_order() -> None:
    sender = FakeSender()
    items = [{"id": "a", "headline": "Fed holds"}, {"headline": "Oil slumps", "source": "wire"}]

    async def scenario(client: TestClient) -> None:
        response = await client.post("/news", json=items)
        assert response.status == 202
        body = await response.json()
        expected = ["a", derive_event_id(source="wire", url=None, headline="Oil slumps")]
        assert body == {"accepted": 2, "event_ids": expected}

    run(sender, scenario)
    assert [[e.event_id for e in batch] for batch in sender.batches] == [
        ["a", derive_event_id(source="wire", url=None, headline="Oil slumps")]
    ]
    assert json.loads(sender.batches[0][1].payload) == items[1]


def test_post_one_object() -> None:
    sender = FakeSender()

    async def scenario(client: TestClient) -> None:
        response = await client.post("/news", data=b'{"id": 9, "headline": "Gold rallies"}')
        assert response.status == 202
        assert (await response.json())["event_ids"] == ["9"]

    run(sender, scenario)
    assert len(sender.batches) == 1


def test_invalid_items_are_listed_and_nothing_is_sent() -> None:
    sender = FakeSender()
    items: list[Any] = [
        {"headline": "fine"},
        {"body": "no headline"},
        {"headline": "x", "published_at": "tomorrow"},
        7,
    ]

    async def scenario(client: TestClient) -> None:
        response = await client.post("/news", json=items)
        assert response.status == 400
        body = await response.json()
        assert body["error"] == "3 of 4 items are invalid; nothing was sent"
        assert body["invalid"] == [
            {"index": 1, "reason": "headline is missing", "error_type": "missing_headline"},
            {
                "index": 2,
                "reason": "published_at 'tomorrow' is not an ISO 8601 timestamp",
                "error_type": "invalid_timestamp",
            },
            {"index": 3, "reason": "message must be a JSON object, got a number", "error_type": "wrong_type"},
        ]

    run(sender, scenario)
    assert sender.batches == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[]", "the list is empty"),
        (b'"a string"', "must be a JSON object (one item) or a list"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b'[{"headline": NaN}]', "NaN is not a JSON number"),
    ],
)
def test_unusable_bodies(body: bytes, error: str) -> None:
    sender = FakeSender()

    async def scenario(client: TestClient) -> None:
        response = await client.post("/news", data=body)
        assert response.status == 400
        assert error in (await response.json())["error"]

    run(sender, scenario)
    assert sender.batches == []


def test_items_nested_near_the_recursion_limit_are_a_400_never_a_500(python_recursion_limit: int) -> None:
    """Decoded just short of the limit in the parse thread, such an item overflowed the
    encoder (RecursionError: a 500); it is an invalid item now, or valid, but answered."""
    sender = FakeSender()

    async def scenario(client: TestClient) -> None:
        statuses = set()
        for depth in range(950, 1000):
            body = b'{"headline": "x", "x": ' + b"[" * depth + b"]" * depth + b"}"
            response = await client.post("/news", data=body)
            statuses.add(response.status)
        assert statuses <= {202, 400} and 400 in statuses, statuses

    run(sender, scenario)


def test_body_over_the_limit_is_413() -> None:
    sender = FakeSender()
    big = json.dumps({"headline": "x", "body": "y" * 5_000}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1_000):
            yield big[start : start + 1_000]

    async def scenario(client: TestClient) -> None:
        response = await client.post("/news", data=big)  # with Content-Length
        assert response.status == 413
        assert "4,096-byte limit" in (await response.json())["error"]
        response = await client.post("/news", data=chunks())  # chunked, no Content-Length
        assert response.status == 413

    run(sender, scenario, max_body_bytes=4_096)
    assert sender.batches == []


def test_broker_failure_is_a_generic_503_and_the_details_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(client: TestClient) -> None:
        response = await client.post("/news", json={"headline": "x"})
        assert response.status == 503
        body = await response.text()
        assert "127.0.0.1" not in body and "Kafka broker at" not in body  # no broker address to a client
        assert json.loads(body)["error"] == "the message broker is unavailable; nothing was sent, retry later"

    with caplog.at_level("WARNING", logger="services.ingest.http_source"):
        run(FakeSender(fail=True), scenario)
    assert "Kafka broker at 127.0.0.1:1 is not reachable" in caplog.text


def test_health() -> None:
    async def scenario(client: TestClient) -> None:
        response = await client.get("/health")
        assert response.status == 200
        assert await response.json() == {"status": "ok"}

    run(FakeSender(), scenario)


def test_parse_batch_is_pure() -> None:
    valid, problems = parse_batch(b'[{"headline": "a"}, {"headline": ""}]')
    assert len(valid) == 1
    assert [(p.index, p.error_type) for p in problems] == [(1, "missing_headline")]
    with pytest.raises(BadRequest):
        parse_batch(b"null")
