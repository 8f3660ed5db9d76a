"""An oversized `news.raw` record must not stall its partition.

Kafka's default limits (and Tansu's) let a record of a little over 1 MB in, but the scorer
refuses anything over `MAX_PAYLOAD_BYTES` (1,000,000 bytes) as `too_large`. Re-sending the
whole value to `news.dlq` through a producer whose request limit is also about 1 MB failed,
the worker exited unacked and met the same record on every restart. The dead letter of an
oversized record carries a bounded prefix of it instead (`services.scorer.dead_letters`), so
it always fits: the worker goes on, the good records after it are stored.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services.broker import EmbeddedBroker
from services.ingest.producer import NewsProducer
from services.scorer.batch import H_ERROR_TYPE
from services.scorer.dead_letters import (
    H_ORIGINAL_SHA256,
    H_ORIGINAL_SIZE,
    H_TRUNCATED,
    MAX_DEAD_LETTER_VALUE_BYTES,
)

from .pipeline import (
    READY_TIMEOUT_S,
    PipelineTopics,
    Worker,
    db_counts,
    event_id,
    migrated_engine,
    new_group,
    valid_payload,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.integration

OVERSIZED_BYTES = 1_200_000
N_GOOD = 50


@pytest.fixture
def db_engine(postgres_url: str) -> Iterator[Engine]:
    with migrated_engine(postgres_url) as engine:
        yield engine


def oversized_payload() -> bytes:
    """A valid-looking news.raw message of 1.2 MB (a huge body)."""
    body = "x" * (OVERSIZED_BYTES - 200)
    payload = json.dumps({"id": "huge-1", "headline": "acme files a very long report", "body": body}).encode()
    assert len(payload) > 1_048_576  # over Kafka's default producer request limit too
    return payload


def test_an_oversized_record_is_dead_lettered_truncated_and_the_partition_goes_on(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list],
    db_engine: Engine,
    postgres_url: str,
    saved_model_dir: Path,
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic, partitions=1)  # one partition: the good records sit behind it
    env = worker_env(
        bootstrap=kafka_broker.bootstrap,
        database_url=postgres_url,
        model_dir=saved_model_dir,
        topics=topics,
        group=new_group(),
        home=tmp_path / "home",
    )
    huge = oversized_payload()
    with Worker(env, tmp_path / "worker.log") as worker:
        big = 4 * 1024 * 1024
        with NewsProducer(kafka_broker.bootstrap, topic=topics.raw, max_request_bytes=big) as producer:
            producer.send_raw(huge, "huge-1")
            producer.flush()
            for i in range(N_GOOD):
                producer.send_raw(valid_payload(i), event_id(i))
            producer.flush()

        wait_for(
            lambda: db_counts(db_engine),
            lambda c: c.news_items >= N_GOOD,
            timeout=READY_TIMEOUT_S + 120.0,  # a deadline: includes the worker's start
            what=f"the {N_GOOD} good records after the oversized one stored",
            workers=[worker],
            interval=1.0,
        )
        dead = consume_topic(topics.dlq, expected=1, timeout=60)
        assert len(dead) == 1, worker.tail()
        record = dead[0]
        headers = dict(record.headers)
        assert record.key == b"huge-1"
        assert headers[H_ERROR_TYPE] == b"too_large"
        assert headers[H_TRUNCATED] == b"true"
        assert int(headers[H_ORIGINAL_SIZE]) == len(huge)
        assert headers[H_ORIGINAL_SHA256] == hashlib.sha256(huge).hexdigest().encode()
        assert len(record.value) <= MAX_DEAD_LETTER_VALUE_BYTES
        assert huge.startswith(record.value)
        time.sleep(2.0)
        worker.assert_alive()
        assert db_counts(db_engine).news_items == N_GOOD
        assert worker.stop() == 0, worker.tail()
