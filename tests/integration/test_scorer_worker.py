"""`finsent worker` end to end: a real broker, a fresh PostgreSQL database, the tiny model, and
the worker as a subprocess. 2,000 valid items and 21 malformed ones in → exactly 2,000
news_items and 2,000 predictions, 2,000 messages on news.scored, and exactly the malformed
ones on news.dlq with their error headers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.pool import NullPool

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
from services.storage import count_items, count_predictions, make_engine, upgrade_database

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
N_VALID = 2_000
PARTITIONS = 4
STORE_TIMEOUT_S = 180.0
SETTLE_S = 5.0

MALFORMED: list[tuple[str, bytes]] = (
    [(f"bad-json-{i}", b'{"headline": "acme surges", ' + str(i).encode()) for i in range(7)]
    + [
        (f"no-headline-{i}", json.dumps({"id": f"no-headline-{i}", "body": "text"}).encode())
        for i in range(7)
    ]
    + [(f"not-utf8-{i}", b'{"headline": "acme \xff\xfe surges ' + str(i).encode() + b'"}') for i in range(7)]
)


def valid_payload(i: int) -> bytes:
    words = ("surge", "plunges", "holds", "beats", "misses")
    item = {
        "id": f"item-{i:05d}",
        "headline": f"acme shares {words[i % len(words)]} after earnings report {i}",
        "source": "test",
        "published_at": f"2025-03-04T{(i // 60) % 24:02d}:{i % 60:02d}:00+00:00",
    }
    return json.dumps(item).encode()


@pytest.fixture
def db_engine(postgres_url: str) -> Iterator[Engine]:
    upgrade_database(postgres_url)
    engine = make_engine(postgres_url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        from sqlalchemy.orm import Session

        with Session(bind=conn) as session:
            return count_items(session), count_predictions(session)


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "services", "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()  # the child has its own copy


def stop_worker(proc: subprocess.Popen[bytes], *, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum over the partitions of `topic` of the group's committed (next) offsets (OffsetFetch)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))
    finally:
        consumer.close(autocommit=False)


def test_worker_scores_2000_items_exactly_once_and_dead_letters_the_malformed(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list],
    db_engine: Engine,
    postgres_url: str,
    saved_model_dir: Path,
    tmp_path: Path,
) -> None:
    raw = make_topic("news.raw", partitions=PARTITIONS)
    scored = make_topic("news.scored", partitions=PARTITIONS)
    dlq = make_topic("news.dlq", partitions=PARTITIONS)
    env = {
        **os.environ,
        "FINSENT_HOME": str(tmp_path / "home"),
        "FINSENT_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "FINSENT_DATABASE_URL": postgres_url,
        "FINSENT_MODEL": str(saved_model_dir),
        "FINSENT_PRECISION": "fp32",
        "FINSENT_TORCH_THREADS": "1",
        "FINSENT_TOPIC_NEWS_RAW": raw,
        "FINSENT_TOPIC_NEWS_SCORED": scored,
        "FINSENT_TOPIC_NEWS_DLQ": dlq,
        "FINSENT_SCORER_GROUP": f"finsent-scorer-test-{uuid.uuid4().hex[:12]}",
        "FINSENT_SCORER_SESSION_TIMEOUT_SECONDS": "6",
        "FINSENT_LOG_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    log_path = tmp_path / "worker.log"
    started = time.monotonic()
    proc = start_worker(env, log_path)
    try:
        with NewsProducer(kafka_broker.bootstrap, topic=raw) as producer:
            for i in range(N_VALID):
                producer.send_raw(valid_payload(i), f"item-{i:05d}")
                if i % 100 == 0:  # spread the malformed ones through the stream
                    key, payload = MALFORMED[(i // 100) % len(MALFORMED)]
                    producer.send_raw(payload, key)
            for key, payload in MALFORMED[N_VALID // 100 :]:
                producer.send_raw(payload, key)
            producer.flush()
        produced = time.monotonic()

        deadline = time.monotonic() + STORE_TIMEOUT_S
        seen = (0, 0)
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            )
            seen = counts(db_engine)
            if seen[0] >= N_VALID and seen[1] >= N_VALID:
                break
            time.sleep(1.0)
        stored = time.monotonic()
        assert seen == (N_VALID, N_VALID), (
            f"after {STORE_TIMEOUT_S:g} s: {seen}\n{log_path.read_text()[-3000:]}"
        )
        time.sleep(SETTLE_S)
        assert counts(db_engine) == (N_VALID, N_VALID)

        dead = consume_topic(dlq, expected=len(MALFORMED), timeout=60)
        assert sorted((r.key, r.value) for r in dead) == sorted((k.encode(), v) for k, v in MALFORMED)
        for record in dead:
            headers = dict(record.headers)
            assert headers[H_SOURCE_TOPIC] == raw.encode()
            assert 0 <= int(headers[H_SOURCE_PARTITION]) < PARTITIONS
            assert int(headers[H_SOURCE_OFFSET]) >= 0
            assert headers[H_ERROR_CLASS] == b"InvalidMessage"
            assert headers[H_ERROR_TYPE]
            assert headers[H_ERROR_MESSAGE]
        expected_type = {"bad-json": None, "no-headline": None, "not-utf8": None}
        for record in dead:
            expected_type[record.key.decode().rsplit("-", 1)[0]] = dict(record.headers)[H_ERROR_TYPE]
        assert len(set(expected_type.values())) == 3, expected_type  # three different reasons

        out = consume_topic(scored, expected=N_VALID, timeout=60)
        event_ids = [json.loads(r.value)["event_id"] for r in out]
        assert len(event_ids) == N_VALID
        assert set(event_ids) == {f"item-{i:05d}" for i in range(N_VALID)}
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
    finally:
        code = stop_worker(proc)
    # Everything processed was committed (at the latest by the graceful stop): a restarted
    # worker of the group would start after the last record. Sum of next offsets = records.
    assert committed_total(kafka_broker.bootstrap, env["FINSENT_SCORER_GROUP"], raw) == N_VALID + len(
        MALFORMED
    )
    print(
        f"\nworker: produce {produced - started:.1f} s, all stored {stored - started:.1f} s after start; "
        f"exit code after SIGTERM {code}"
    )
    assert code == 0, log_path.read_text()[-3000:]
