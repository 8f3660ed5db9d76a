"""Real services for integration tests.

Kafka: one embedded Tansu broker per session (`kafka_broker`), with uniquely named topics per
test (`make_topic`) so tests never see each other's messages. A broker that does not start
fails the tests, like an unreachable PostgreSQL: nothing here is ever skipped. Consumers
count the messages they read; on Tansu, end offsets and lag are not reliable
(docs/architecture.md#the-embedded-broker).

PostgreSQL: each test module that uses `postgres_url` (each test that uses
`fresh_postgres_url`) gets its own database, named finsent_test_<uuid hex>, created on the
server at FINSENT_TEST_POSTGRES_URL (default: the local trust-auth server) and dropped
afterwards. A server that cannot be reached fails the test: these tests exist to run against
the real thing, never to be skipped.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from services.broker import BrokerError, EmbeddedBroker, TopicSpec, ensure_topics
from services.storage import Base, head_revision, make_engine, upgrade_database

POSTGRES_ADMIN_URL = os.environ.get(
    "FINSENT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


HERE = Path(__file__).resolve().parent


# The whole product run end to end: each trains a bootstrap model against a time box or
# compiles the served pass, on every core. scripts/test.sh runs the suite on two pytest-xdist
# workers (`--dist loadgroup`); one group keeps these on one worker, one after another, so two
# of them never halve each other's time box. Beside them the other worker runs the rest.
END_TO_END_MODULES = frozenset(
    {
        "test_chaos.py",
        "test_clone_run.py",
        "test_model_hot_reload.py",
        "test_run_command.py",
        "test_run_signals.py",
        "test_run_upgrade.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder needs the real services, so it carries the `integration`
    marker whether or not its module says so (`-m "not integration"` leaves them all out)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
            if item.path.name in END_TO_END_MODULES:
                item.add_marker(pytest.mark.xdist_group("end-to-end"))


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {' '.join(str(exc).split())}")


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new empty database for the duration of the block; yields its SQLAlchemy URL."""
    name = f"finsent_test_{uuid.uuid4().hex}"
    with _admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with _admin_connection() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for this test module."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database for this one test."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated to head with `upgrade_database`, once per backend for the module
    (the SQLite file in a directory that does not exist yet: migrating must create it)."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/not-yet/finsent.db"
    assert upgrade_database(url) == head_revision()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on `database_url` with every table emptied before the test."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    yield engine
    engine.dispose()


# --------------------------------------------------------------------------- Kafka


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The embedded Tansu broker on a free port, for the whole session (its log in a temp dir)."""
    broker = EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu"), start_timeout=30)
    try:
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"the embedded Kafka broker did not start: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()


MakeTopic = Callable[..., str]


@pytest.fixture
def make_topic(kafka_broker: EmbeddedBroker) -> MakeTopic:
    """`make_topic("news.raw", partitions=4)` creates `news.raw-<uuid>` and returns its name."""

    def make(base: str = "news.raw", *, partitions: int = 1) -> str:
        name = f"{base}-{uuid.uuid4().hex[:12]}"
        ensure_topics(kafka_broker.bootstrap, [TopicSpec(name, partitions)], timeout=10)
        return name

    return make


def consume(
    bootstrap: str,
    topic: str,
    *,
    expected: int | None = None,
    until: Callable[[list[ConsumerRecord]], bool] | None = None,
    timeout: float = 30.0,
    settle: float = 1.0,
) -> list[ConsumerRecord]:
    """Read `topic` from the start in a fresh consumer group until `expected` messages arrived
    (then keep reading `settle` seconds, so extra messages would be seen too) or `until(records)`
    holds, or `timeout` passes. Returns everything read; the caller asserts on it.
    """
    if (expected is None) == (until is None):
        raise ValueError("give exactly one of expected= or until=")
    done = until or (lambda records: len(records) >= (expected or 0))
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,  # Tansu: a group join waits session_timeout/2
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=int(timeout * 1000),
    )
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    quiet_until: float | None = None
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if quiet_until is None and done(records):
                if until is not None:
                    break
                quiet_until = time.monotonic() + settle
            if quiet_until is not None and time.monotonic() >= quiet_until:
                break
    finally:
        consumer.close(autocommit=False)
    return records


@pytest.fixture
def consume_topic(kafka_broker: EmbeddedBroker) -> Callable[..., list[ConsumerRecord]]:
    """`consume_topic(topic, expected=n)` or `consume_topic(topic, until=pred)` on the session broker."""

    def run(topic: str, **kwargs: object) -> list[ConsumerRecord]:
        return consume(kafka_broker.bootstrap, topic, **kwargs)  # type: ignore[arg-type]

    return run
