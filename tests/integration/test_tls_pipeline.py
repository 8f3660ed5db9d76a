"""The pipeline over verified TLS only: `finsent init`, `finsent ingest` and `finsent worker` talk to
the embedded broker through stunnel (TLS, certificate and host name checked against a throwaway
CA) and store into a PostgreSQL that accepts TLS connections only (sslmode=verify-full).

The broker advertises stunnel's address in its metadata (`EmbeddedBroker(advertised=...)`), so
every connection a client opens after bootstrapping — to the partition leaders, the group
coordinator — goes through TLS as well; nothing reaches Tansu's plaintext port but stunnel.
A wrong CA makes each command fail with one line saying so, for Kafka and for Postgres.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.broker import BrokerUnavailable, EmbeddedBroker, describe_topics
from services.broker.clients import kafka_consumer
from services.broker.embedded import free_port
from services.broker.security import PLAINTEXT, KafkaSecurity

from .alerter_process import AlerterProcess
from .pipeline import (
    REPO_ROOT,
    PipelineTopics,
    Worker,
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
from .tls_support import HOST, Pki, TlsPostgres, make_pki, stunnel, tls_postgres

pytestmark = pytest.mark.integration

N_ITEMS = 300


@dataclass(frozen=True)
class TlsKafka:
    bootstrap: str  # stunnel's TLS port, which the broker advertises
    plaintext: str  # Tansu's own port, reached only by stunnel
    security: KafkaSecurity  # verified against the test CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    folder = tmp_path_factory.mktemp("tls-kafka")
    broker_port, tls_port = free_port(), free_port()
    security = KafkaSecurity(protocol="SSL", cafile=pki.ca_file)
    with stunnel(tls_port, broker_port, pki, folder):
        broker = EmbeddedBroker(
            log_dir=folder,
            port=broker_port,
            advertised=f"{HOST}:{tls_port}",
            client_security=security,
            start_timeout=30,
        )
        with broker:
            yield TlsKafka(broker.bootstrap, f"{HOST}:{broker_port}", security)


@pytest.fixture(scope="module")
def tls_pg(pki: Pki) -> Iterator[TlsPostgres]:
    with tls_postgres(pki) as server:
        yield server


def tls_env(
    base: dict[str, str], pki: Pki, *, kafka_ca: Path | None = None, pg_ca: Path | None = None
) -> dict[str, str]:
    """`base` with TLS on for Kafka and Postgres, both verified (host names included)."""
    return {
        **base,
        "FINSENT_KAFKA_SECURITY_PROTOCOL": "SSL",
        "FINSENT_KAFKA_SSL_CAFILE": str(kafka_ca or pki.ca_file),
        "FINSENT_DATABASE_SSLMODE": "verify-full",
        "FINSENT_DATABASE_SSLROOTCERT": str(pg_ca or pki.ca_file),
    }


def finsent(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_all(bootstrap: str, topic: str, security: KafkaSecurity, n: int, timeout: float = 60) -> list:
    from kafka import TopicPartition

    consumer = kafka_consumer(bootstrap=bootstrap, security=security, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        records: list = []
        wait_for(
            lambda: (
                records.extend(r for batch in consumer.poll(timeout_ms=500).values() for r in batch)
                or records
            ),
            lambda got: len(got) >= n,
            timeout=timeout,
            what=f"{n} records on {topic} over TLS",
            workers=[],
        )
        return records
    finally:
        consumer.close()


def committed_total(kafka: TlsKafka, group: str, topic: str) -> int:
    from kafka import TopicPartition

    consumer = kafka_consumer(
        bootstrap=kafka.bootstrap, security=kafka.security, group_id=group, enable_auto_commit=False
    )
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions)
    finally:
        consumer.close(autocommit=False)


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_pipeline_through_verified_tls_kafka_and_postgres(
    tls_kafka: TlsKafka, tls_pg: TlsPostgres, pki: Pki, saved_model_dir: Path, tmp_path: Path
) -> None:
    # The endpoints really are TLS-only: a plaintext client gets nowhere on either.
    with pytest.raises(BrokerUnavailable):
        describe_topics(tls_kafka.bootstrap, ["x"], timeout=3, security=PLAINTEXT)
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(f"postgresql://postgres@{HOST}:{tls_pg.port}/postgres?sslmode=disable").close()

    suffix = new_group().rsplit("-", 1)[1]
    topics = PipelineTopics(f"news.raw-{suffix}", f"news.scored-{suffix}", f"news.dlq-{suffix}")
    group = new_group()
    env = tls_env(
        worker_env(
            bootstrap=tls_kafka.bootstrap,
            database_url=tls_pg.url(),
            model_dir=saved_model_dir,
            topics=topics,
            group=group,
            home=tmp_path / "home",
        ),
        pki,
    )
    init = finsent(env, "init")
    assert init.returncode == 0, init.stderr
    assert f"topics ready on {tls_kafka.bootstrap}" in init.stdout

    news = tmp_path / "news.jsonl"
    news.write_bytes(b"\n".join(valid_payload(i) for i in range(N_ITEMS)) + b"\n")
    ingest = finsent(env, "ingest", str(news))
    assert ingest.returncode == 0, ingest.stderr
    assert f"sent {N_ITEMS} items" in ingest.stdout

    verified_url = tls_pg.url(sslmode="verify-full", sslrootcert=str(pki.ca_file))
    expected = expected_counts(N_ITEMS)
    with migrated_engine(verified_url) as engine, Worker(env, tmp_path / "worker.log") as worker:
        wait_for(
            lambda: db_counts(engine),
            lambda counts: counts == expected,
            timeout=180,
            what=f"all {N_ITEMS} items stored in the TLS postgres",
            workers=[worker],
        )
        scored = read_all(tls_kafka.bootstrap, topics.scored, tls_kafka.security, N_ITEMS)
        assert sorted(set(scored_ids(scored))) == sorted(event_id(i) for i in range(N_ITEMS))
        assert worker.stop() == 0, worker.tail()

        # The alerter reads news.scored (a consumer group) and writes its state, both over TLS;
        # it commits a batch only after its database transaction.
        alerter_group = f"finsent-alerter-tls-{suffix}"
        alerter_env = {
            **env,
            "FINSENT_ALERTER_GROUP": alerter_group,
            "FINSENT_ALERTER_SESSION_TIMEOUT_SECONDS": "6",
            "FINSENT_ALERTER_TICK_SECONDS": "0.5",
            "FINSENT_ALERTER_METRICS_PORT": "0",
        }
        with AlerterProcess(alerter_env, tmp_path / "alerter.log") as alerter:
            wait_for(
                lambda: committed_total(tls_kafka, alerter_group, topics.scored),
                lambda total: total >= N_ITEMS,
                timeout=120,
                what=f"the alerter commits all {N_ITEMS} scored records over TLS",
                workers=[alerter],
            )
            assert alerter.stop() == 0, alerter.tail()


def test_wrong_kafka_ca_fails_each_command_with_one_line(
    tls_kafka: TlsKafka, tls_pg: TlsPostgres, pki: Pki, saved_model_dir: Path, tmp_path: Path
) -> None:
    topics = PipelineTopics("news.raw", "news.scored", "news.dlq")
    env = tls_env(
        worker_env(
            bootstrap=tls_kafka.bootstrap,
            database_url=tls_pg.url(),
            model_dir=saved_model_dir,
            topics=topics,
            group=new_group(),
            home=tmp_path / "home",
        ),
        pki,
        kafka_ca=pki.other_ca_file,
    )
    news = tmp_path / "news.jsonl"
    news.write_bytes(valid_payload(0) + b"\n")
    for command in (["init"], ["ingest", str(news)], ["worker"]):
        line = one_line_failure(finsent(env, *command))
        assert line.startswith("finsent: error: TLS to Kafka at"), (command, line)
        assert "certificate verify failed" in line and "FINSENT_KAFKA_SSL_CAFILE" in line, (command, line)


def test_wrong_postgres_ca_fails_with_one_line(tls_pg: TlsPostgres, pki: Pki, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FINSENT_HOME": str(tmp_path / "home"),
        "FINSENT_DATABASE_URL": tls_pg.url(),
        "FINSENT_DATABASE_SSLMODE": "verify-full",
        "FINSENT_DATABASE_SSLROOTCERT": str(pki.other_ca_file),
    }
    line = one_line_failure(finsent(env, "db", "upgrade"))
    assert line.startswith("finsent: error: database "), line
    assert "certificate verify failed" in line, line
    plain = one_line_failure(finsent({**env, "FINSENT_DATABASE_SSLMODE": "disable"}, "db", "current"))
    assert "no encryption" in plain, plain
    good = finsent({**env, "FINSENT_DATABASE_SSLROOTCERT": str(pki.ca_file)}, "db", "upgrade")
    assert good.returncode == 0, good.stderr
