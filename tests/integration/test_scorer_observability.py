"""`finsent worker`'s observability, scraped from the real worker (subprocess, embedded broker,
fresh PostgreSQL database, tiny model): `/health` goes from unreachable or `starting` to `ok`
with the four assigned partitions; after 300 valid and 9 malformed items, `/metrics` counts
exactly what the database and the dead-letter topic hold, its consumer positions equal the
offsets the group commits, and the JSON log has one structured line per batch and one
warning per dead letter."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from bert_core import verify_model_dir
from services.broker import EmbeddedBroker
from services.ingest.producer import NewsProducer

from .pipeline import (
    PARTITIONS,
    READY_TIMEOUT_S,
    PipelineTopics,
    Worker,
    committed_offsets,
    db_counts,
    event_id,
    migrated_engine,
    new_group,
    valid_payload,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.integration

N_VALID = 300
MALFORMED: list[tuple[str, bytes]] = [
    *((f"bad-json-{i}", b'{"headline": "acme' + str(i).encode()) for i in range(3)),
    *((f"no-headline-{i}", json.dumps({"id": f"nh-{i}", "body": "text"}).encode()) for i in range(3)),
    *((f"not-object-{i}", json.dumps([i]).encode()) for i in range(3)),
]
TIMEOUT_S = READY_TIMEOUT_S + 120.0  # a deadline: some waits include the worker's start
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def db_engine(postgres_url: str) -> Iterator[Engine]:
    with migrated_engine(postgres_url) as engine:
        yield engine


def http_get(url: str) -> tuple[int, bytes] | None:
    """(status, body), or None while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:  # 503 is an answer too
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError):
        return None


def health(base: str) -> tuple[int, dict[str, Any]] | None:
    answer = http_get(f"{base}/health")
    return None if answer is None else (answer[0], json.loads(answer[1]))


def scrape(base: str) -> Samples:
    answer = http_get(f"{base}/metrics")
    assert answer is not None and answer[0] == 200, answer
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer[1].decode())
        for sample in family.samples
    }


def total(samples: Samples, name: str) -> float:
    """Sum of a metric over all its label values."""
    return sum(value for (sample, _), value in samples.items() if sample == name)


def labelled(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


def json_log(worker: Worker) -> list[dict[str, Any]]:
    return [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]


def test_worker_metrics_health_and_structured_logs(
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
    env["FINSENT_LOG_FORMAT"] = "json"
    env["FINSENT_SCORER_MAX_BATCH"] = "128"  # several batches, whatever the arrival timing
    base = f"http://127.0.0.1:{env['FINSENT_SCORER_METRICS_PORT']}"
    version = verify_model_dir(saved_model_dir).version
    n_records = N_VALID + len(MALFORMED)
    started = time.time()

    with Worker(env, tmp_path / "worker.log") as worker:
        first = wait_for(
            lambda: health(base),
            lambda h: h is not None,
            timeout=TIMEOUT_S,
            what="/health up",
            workers=[worker],
        )
        assert first is not None
        status, body = first
        assert (status, body["status"]) in {(503, "starting"), (200, "ok")}, first
        assert body["model_version"] in (None, version)  # None while the model loads

        ready = wait_for(
            lambda: health(base),
            lambda h: h is not None and h[0] == 200,
            timeout=TIMEOUT_S,
            what="/health 200",
            workers=[worker],
        )
        assert ready is not None
        status, body = ready
        assert body["status"] == "ok" and body["database"] == "ok"
        assert body["model_version"] == version
        assert body["assigned_partitions"] == [
            {"topic": topics.raw, "partition": p} for p in range(PARTITIONS)
        ]
        assert body["last_batch_at"] is None

        with NewsProducer(kafka_broker.bootstrap, topic=topics.raw) as producer:
            for i in range(N_VALID):
                producer.send_raw(valid_payload(i), event_id(i))
                if i % 33 == 0 and i // 33 < len(MALFORMED):
                    producer.send_raw(MALFORMED[i // 33][1], MALFORMED[i // 33][0])
            producer.flush()

        samples = wait_for(
            lambda: scrape(base),
            lambda s: total(s, "finsent_scorer_batch_size_sum") >= n_records,
            timeout=TIMEOUT_S,
            what=f"{n_records} records in the metrics",
            workers=[worker],
        )
        assert db_counts(db_engine).news_items == N_VALID
        assert total(samples, "finsent_scorer_items_total") == N_VALID
        assert total(samples, "finsent_scorer_duplicates_total") == 0
        dead = labelled(samples, "finsent_scorer_dead_letters_total")
        assert sum(dead.values()) == len(MALFORMED)
        assert len([v for v in dead.values() if v]) == 3, dead  # three error types
        assert len(consume_topic(topics.dlq, expected=len(MALFORMED), timeout=60)) == len(MALFORMED)
        assert labelled(samples, "finsent_model_info") == {frozenset({("model_version", version)}): 1.0}
        assert total(samples, "finsent_scorer_assigned_partitions") == PARTITIONS
        assert total(samples, "finsent_scorer_storage_retries_total") == 0
        batches = total(samples, "finsent_scorer_batch_size_count")
        assert batches >= 3  # 309 records in batches of at most 128
        assert (
            labelled(samples, "finsent_scorer_batch_seconds_count")[frozenset({("stage", "total")})]
            == batches
        )
        assert total(samples, "finsent_scorer_ingest_to_commit_seconds_count") == N_VALID
        assert 0 < total(samples, "finsent_scorer_ingest_to_commit_seconds_sum") < N_VALID * TIMEOUT_S
        assert started < total(samples, "finsent_scorer_last_batch_timestamp_seconds") <= time.time()
        positions = {
            int(dict(labels)["partition"]): value
            for labels, value in labelled(samples, "finsent_scorer_consumer_position").items()
            if dict(labels)["topic"] == topics.raw
        }
        assert sorted(positions) == list(range(PARTITIONS))
        assert sum(positions.values()) == n_records

        after = health(base)
        assert after is not None
        status, body = after
        assert (status, body["status"], body["items_stored"], body["dead_letters"]) == (
            200,
            "ok",
            N_VALID,
            len(MALFORMED),
        )
        assert body["last_batch_at"] is not None

        code = worker.stop()
        assert code == 0, worker.tail()
        log = json_log(worker)

    # the positions the worker reported are the offsets its group committed on the way out
    committed = committed_offsets(kafka_broker.bootstrap, group, topics.raw)
    assert {p: int(v) for p, v in positions.items()} == dict(enumerate(committed))

    warnings = [line for line in log if line["event"].startswith("dead letter")]
    assert sorted(w["event_key"] for w in warnings) == sorted(key for key, _ in MALFORMED)
    for w in warnings:
        assert w["level"] == "warning"
        assert w["source_topic"] == topics.raw and w["source_offset"] >= 0
        assert w["error_type"] and w["error_class"] == "InvalidMessage" and w["reason"]
    batch_lines = [line for line in log if line["event"].startswith("batch: ")]
    assert sum(line["batch_records"] for line in batch_lines) == n_records
    assert sum(line["stored"] for line in batch_lines) == N_VALID
    for line in batch_lines:
        assert "event_ids" in line or ("first_event_id" in line and "last_event_id" in line)
        assert line["seconds"] >= 0 and line["partitions"]
    events = [line["event"] for line in log]
    assert "partitions assigned" in events
    assert not [e for e in events if e.endswith("]: Starting...")], "faust's start-up chatter is filtered"
