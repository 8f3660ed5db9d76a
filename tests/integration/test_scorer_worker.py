"""`finsent worker` end to end: a real broker, a fresh PostgreSQL database, the tiny model, and
the worker as a subprocess. 2,000 valid items and 21 malformed ones in → exactly 2,000
news_items and 2,000 predictions, 2,000 messages on news.scored, and exactly the malformed
ones on news.dlq with their error headers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka.partitioner import murmur2
from sqlalchemy import Engine

from services.broker import EmbeddedBroker
from services.ingest.producer import NewsProducer
from services.scorer.batch import (
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_SOURCE_OFFSET,
    H_SOURCE_PARTITION,
    H_SOURCE_TOPIC,
)

from .pipeline import (
    PARTITIONS,
    READY_TIMEOUT_S,
    PipelineTopics,
    Worker,
    committed_total,
    db_counts,
    event_id,
    expected_counts,
    migrated_engine,
    new_group,
    scored_ids,
    valid_payload,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.integration

N_VALID = 2_000
STORE_TIMEOUT_S = READY_TIMEOUT_S + 180.0  # a deadline: the wait includes the worker's start
SETTLE_S = 5.0

MALFORMED: list[tuple[str, bytes]] = (
    [(f"bad-json-{i}", b'{"headline": "acme surges", ' + str(i).encode()) for i in range(7)]
    + [
        (f"no-headline-{i}", json.dumps({"id": f"no-headline-{i}", "body": "text"}).encode())
        for i in range(7)
    ]
    + [(f"not-utf8-{i}", b'{"headline": "acme \xff\xfe surges ' + str(i).encode() + b'"}') for i in range(7)]
)


def murmur2_partition(key: bytes, partitions: int) -> int:
    """kafka-python's (and the Java client's) partition of a keyed message."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@pytest.fixture
def db_engine(postgres_url: str) -> Iterator[Engine]:
    with migrated_engine(postgres_url) as engine:
        yield engine


def test_worker_scores_2000_items_exactly_once_and_dead_letters_the_malformed(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list],
    db_engine: Engine,
    postgres_url: str,
    saved_model_dir: Path,
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic)
    group = new_group()
    env = worker_env(
        bootstrap=kafka_broker.bootstrap,
        database_url=postgres_url,
        model_dir=saved_model_dir,
        topics=topics,
        group=group,
        home=tmp_path / "home",
    )
    expected = expected_counts(N_VALID)
    started = time.monotonic()
    with Worker(env, tmp_path / "worker.log") as worker:
        with NewsProducer(kafka_broker.bootstrap, topic=topics.raw) as producer:
            for i in range(N_VALID):
                producer.send_raw(valid_payload(i), event_id(i))
                if i % 100 == 0:  # spread the malformed ones through the stream
                    key, payload = MALFORMED[(i // 100) % len(MALFORMED)]
                    producer.send_raw(payload, key)
            for key, payload in MALFORMED[N_VALID // 100 :]:
                producer.send_raw(payload, key)
            producer.flush()
        produced = time.monotonic()

        seen = wait_for(
            lambda: db_counts(db_engine),
            lambda c: c.news_items >= N_VALID and c.predictions >= N_VALID,
            timeout=STORE_TIMEOUT_S,
            what=f"{N_VALID} items stored",
            workers=[worker],
            interval=1.0,
        )
        stored = time.monotonic()
        assert seen == expected, worker.tail()
        time.sleep(SETTLE_S)
        assert db_counts(db_engine) == expected

        dead = consume_topic(topics.dlq, expected=len(MALFORMED), timeout=60)
        assert sorted((r.key, r.value) for r in dead) == sorted((k.encode(), v) for k, v in MALFORMED)
        for record in dead:
            headers = dict(record.headers)
            assert headers[H_SOURCE_TOPIC] == topics.raw.encode()
            assert 0 <= int(headers[H_SOURCE_PARTITION]) < PARTITIONS
            assert int(headers[H_SOURCE_OFFSET]) >= 0
            assert headers[H_ERROR_CLASS] == b"InvalidMessage"
            assert headers[H_ERROR_TYPE]
            assert headers[H_ERROR_MESSAGE]
        expected_type = {"bad-json": None, "no-headline": None, "not-utf8": None}
        for record in dead:
            expected_type[record.key.decode().rsplit("-", 1)[0]] = dict(record.headers)[H_ERROR_TYPE]
        assert len(set(expected_type.values())) == 3, expected_type  # three different reasons

        out = consume_topic(topics.scored, expected=N_VALID, timeout=60)
        # published as record batches, partitioned as a keyed send would be (Java murmur2)
        assert all(r.partition == murmur2_partition(r.key, PARTITIONS) for r in out)
        assert len({r.partition for r in out}) == PARTITIONS
        event_ids = scored_ids(out)
        assert len(event_ids) == N_VALID
        assert set(event_ids) == {event_id(i) for i in range(N_VALID)}
        first = json.loads(out[0].value)
        assert set(first) == {
            "event_id",
            "published_at",
            "topic",
            "sentiment",
            "probs",
            "sentiment_score",
            "tickers",
            "model_version",
        }
        code = worker.stop()
    # Everything processed was committed (at the latest by the graceful stop): a restarted
    # worker of the group would start after the last record. Sum of next offsets = records.
    assert committed_total(kafka_broker.bootstrap, group, topics.raw) == N_VALID + len(MALFORMED)
    print(
        f"\nworker: produce {produced - started:.1f} s, all stored {stored - started:.1f} s after start; "
        f"exit code after SIGTERM {code}"
    )
    assert code == 0, worker.tail()
