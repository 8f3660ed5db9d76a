"""The scorer worker's delivery guarantees under failure, end to end: the embedded broker, a fresh
PostgreSQL database per test, the tiny model, and `finsent worker` as a subprocess.

- SIGKILL mid-stream and a restart: every item stored exactly once (at-least-once delivery,
  exactly-once effect); no offset was ever committed ahead of the database.
- The database unreachable for 10 s mid-stream (a TCP proxy refuses and cuts connections; the
  shared server keeps running): the worker waits it out, then stores everything exactly once.
- Replaying the topic from the start (a second group) changes no row.

Items are produced at a steady pace while the worker runs, so it is mid-stream, with batches in
flight, when the failure strikes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from services.broker import EmbeddedBroker

from .pipeline import (
    READY_TIMEOUT_S,
    PacedProducer,
    PipelineTopics,
    Worker,
    committed_total,
    db_counts,
    event_id,
    expected_counts,
    migrated_engine,
    new_group,
    produce,
    scored_ids,
    snapshot,
    wait_for,
    wait_until_processed,
    worker_env,
)
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

STORE_TIMEOUT_S = READY_TIMEOUT_S + 120.0  # a deadline: some waits include a worker (re)start
COMMIT_TIMEOUT_S = 30.0  # faust commits acked offsets every 2.8 s


@pytest.fixture
def db_engine(fresh_postgres_url: str) -> Iterator[Engine]:
    with migrated_engine(fresh_postgres_url) as engine:
        yield engine


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _all_ids(n: int) -> set[str]:
    return {event_id(i) for i in range(n)}


# --------------------------------------------------------------------------- (a) SIGKILL and restart

N_CRASH = 2_000
CRASH_RATE = 200.0  # items/s: a 10 s stream that the worker keeps up with
KILL_AT = 600  # stored items when the worker is killed


def test_worker_killed_mid_stream_and_restarted_stores_every_item_exactly_once(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list],
    db_engine: Engine,
    saved_model_dir: Path,
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic)
    group = new_group()
    env = worker_env(
        bootstrap=kafka_broker.bootstrap,
        database_url=_url(db_engine),
        model_dir=saved_model_dir,
        topics=topics,
        group=group,
        home=tmp_path / "home",
    )
    expected = expected_counts(N_CRASH)
    producer = PacedProducer(kafka_broker.bootstrap, topics.raw, N_CRASH, rate=CRASH_RATE)

    with Worker(env, tmp_path / "worker-1.log", name="killed worker") as first:
        first.wait_ready()
        producer.start()
        wait_for(
            lambda: db_counts(db_engine),
            lambda c: c.news_items >= KILL_AT,
            timeout=STORE_TIMEOUT_S,
            what=f"the first worker stores {KILL_AT} items",
            workers=[first],
            interval=0.05,
        )
        first.kill()
    # Nothing commits offsets of this group now: the killed member cannot, the next is not started.
    committed_at_kill = committed_total(kafka_broker.bootstrap, group, topics.raw)
    at_kill = db_counts(db_engine)
    assert at_kill.news_items < N_CRASH, f"not mid-stream: {at_kill}"
    # Ack after commit: an offset is committed only after its item is in the database.
    assert committed_at_kill <= at_kill.news_items, (
        f"offsets of {committed_at_kill} records committed, only {at_kill.news_items} items stored\n"
        f"{first.tail()}"
    )

    with Worker(env, tmp_path / "worker-2.log", name="restarted worker") as second:
        progress = wait_until_processed(
            db_engine,
            N_CRASH,
            bootstrap=kafka_broker.bootstrap,
            group=group,
            topic=topics.raw,
            workers=[second],
            timeout=STORE_TIMEOUT_S,
        )
        assert progress.rows == expected, f"after the restart: {progress}\n{second.tail()}"
        producer.join()

        all_ids = _all_ids(N_CRASH)
        out = consume_topic(
            topics.scored, until=lambda records: set(scored_ids(records)) >= all_ids, timeout=60
        )
        assert set(scored_ids(out)) == all_ids  # duplicates are allowed after a crash, gaps are not

        wait_for(
            lambda: committed_total(kafka_broker.bootstrap, group, topics.raw),
            lambda total: total == N_CRASH,
            timeout=COMMIT_TIMEOUT_S,
            what=f"the restarted worker commits all {N_CRASH} records",
            workers=[second],
        )
        assert db_counts(db_engine) == expected
        reprocessed = sum(records for records, _, _ in second.batches())
        code = second.stop()
    assert code == 0, second.tail()
    print(
        f"\nkilled with {at_kill.news_items} items stored and {committed_at_kill} records committed; "
        f"the restarted worker processed {reprocessed} records "
        f"({at_kill.news_items - committed_at_kill} stored before the kill were redelivered); "
        f"news.scored had {len(out)} messages when all {N_CRASH} items were seen there"
    )


# --------------------------------------------------------------------------- (b) database outage

N_OUTAGE = 1_000
OUTAGE_RATE = 100.0  # items/s: the stream goes on through most of the outage
OUTAGE_AT = 200  # stored items when the database goes away
OUTAGE_S = 10.0
RETRY_LOG = "failed (attempt"  # services.scorer.sink logs each failed attempt with this


def test_db_proxy_refuses_new_and_cuts_open_connections_during_an_outage(db_engine: Engine) -> None:
    """The tool of the next test does what it claims, on its own."""
    target = make_url(_url(db_engine))
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        dsn = target.set(drivername="postgresql", host="127.0.0.1", port=proxy.port)
        dsn_str = dsn.render_as_string(hide_password=False)
        with psycopg.connect(dsn_str, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            proxy.outage()
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(dsn_str, connect_timeout=5)
        proxy.restore()
        with psycopg.connect(dsn_str, connect_timeout=5) as conn:
            assert conn.execute("SELECT 2").fetchone() == (2,)
        assert proxy.cut == 1
        assert proxy.accepted == 2


def test_database_unreachable_for_10_s_mid_stream_loses_nothing(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list],
    db_engine: Engine,
    saved_model_dir: Path,
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic)
    group = new_group()
    target = make_url(_url(db_engine))
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        via_proxy = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        env = worker_env(
            bootstrap=kafka_broker.bootstrap,
            database_url=via_proxy,
            model_dir=saved_model_dir,
            topics=topics,
            group=group,
            home=tmp_path / "home",
        )
        expected = expected_counts(N_OUTAGE)
        producer = PacedProducer(kafka_broker.bootstrap, topics.raw, N_OUTAGE, rate=OUTAGE_RATE)
        with Worker(env, tmp_path / "worker.log") as worker:
            worker.wait_ready()
            producer.start()
            wait_for(
                lambda: db_counts(db_engine),  # the test reads the database directly, not via the proxy
                lambda c: c.news_items >= OUTAGE_AT,
                timeout=STORE_TIMEOUT_S,
                what=f"{OUTAGE_AT} items stored before the outage",
                workers=[worker],
                interval=0.05,
            )
            proxy.outage()
            down_at = time.monotonic()
            assert proxy.cut >= 1, "the worker held no database connection to cut"

            time.sleep(1.0)  # a commit already on its way when the connection was cut lands now
            frozen = db_counts(db_engine)
            health_during: list[tuple[int, str] | None] = []
            while time.monotonic() < down_at + OUTAGE_S:
                worker.assert_alive()
                assert db_counts(db_engine) == frozen, "rows were written while the database was away"
                answer = worker.health()
                health_during.append(None if answer is None else (answer[0], answer[1]["database"]))
                time.sleep(0.5)
            assert frozen.news_items < N_OUTAGE, f"everything was stored before the outage: {frozen}"
            retries = worker.log().count(RETRY_LOG)
            assert retries >= 1, f"the worker never failed to store during the outage\n{worker.tail()}"
            # Its event loop kept answering, and it said the stream is paused on the database.
            assert (503, "retrying") in health_during, health_during
            proxy.restore()
            up_at = time.monotonic()

            progress = wait_until_processed(
                db_engine,
                N_OUTAGE,
                bootstrap=kafka_broker.bootstrap,
                group=group,
                topic=topics.raw,
                workers=[worker],
                timeout=STORE_TIMEOUT_S,
            )
            resumed_after = time.monotonic() - up_at
            assert progress.rows == expected, f"after the outage: {progress}\n{worker.tail()}"
            producer.join()

            all_ids = _all_ids(N_OUTAGE)
            out = consume_topic(
                topics.scored, until=lambda records: set(scored_ids(records)) >= all_ids, timeout=60
            )
            assert set(scored_ids(out)) == all_ids
            wait_for(
                lambda: committed_total(kafka_broker.bootstrap, group, topics.raw),
                lambda total: total == N_OUTAGE,
                timeout=COMMIT_TIMEOUT_S,
                what=f"the worker commits all {N_OUTAGE} records",
                workers=[worker],
            )
            worker.assert_alive()  # it waited the outage out instead of exiting
            answer = worker.health()
            assert answer is not None and answer[0] == 200 and answer[1]["database"] == "ok", answer
            assert db_counts(db_engine) == expected
            code = worker.stop()
        assert code == 0, worker.tail()
    print(
        f"\noutage of {OUTAGE_S:g} s with {frozen.news_items} of {N_OUTAGE} items stored: "
        f"{proxy.cut} connection(s) cut, {retries} failed attempts logged during it; "
        f"all stored {resumed_after:.1f} s after the database came back"
    )


# --------------------------------------------------------------------------- (c) replay

N_REPLAY = 1_000


def test_replaying_the_topic_from_the_start_changes_no_row(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list],
    db_engine: Engine,
    saved_model_dir: Path,
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic)
    first_group, replay_group = new_group(), new_group()
    expected = expected_counts(N_REPLAY)

    def env(group: str, home: str) -> dict[str, str]:
        return worker_env(
            bootstrap=kafka_broker.bootstrap,
            database_url=_url(db_engine),
            model_dir=saved_model_dir,
            topics=topics,
            group=group,
            home=tmp_path / home,
        )

    with Worker(env(first_group, "home-1"), tmp_path / "worker-1.log", name="first worker") as first:
        produce(kafka_broker.bootstrap, topics.raw, range(N_REPLAY))
        progress = wait_until_processed(
            db_engine,
            N_REPLAY,
            bootstrap=kafka_broker.bootstrap,
            group=first_group,
            topic=topics.raw,
            workers=[first],
            timeout=STORE_TIMEOUT_S,
        )
        assert progress.rows == expected, f"{progress}\n{first.tail()}"
        assert first.stop() == 0, first.tail()
    before = snapshot(db_engine)
    assert tuple(len(rows) for rows in before.values()) == expected
    assert committed_total(kafka_broker.bootstrap, first_group, topics.raw) == N_REPLAY

    # A new consumer group starts at the earliest offset: the whole topic is processed again.
    with Worker(env(replay_group, "home-2"), tmp_path / "worker-2.log", name="replaying worker") as replay:
        wait_for(
            lambda: committed_total(kafka_broker.bootstrap, replay_group, topics.raw),
            lambda total: total == N_REPLAY,
            timeout=STORE_TIMEOUT_S,
            what=f"the replaying worker consumes and commits all {N_REPLAY} records",
            workers=[replay],
        )
        # Both passes scored and published every item: the replay really went through the pipeline.
        out = consume_topic(topics.scored, expected=2 * N_REPLAY, timeout=60)
        per_item = Counter(scored_ids(out))
        assert set(per_item) == _all_ids(N_REPLAY)
        assert set(per_item.values()) == {2}, per_item.most_common(3)
        assert replay.stop() == 0, replay.tail()

    after = snapshot(db_engine)
    for table, rows in before.items():
        if after[table] != rows:
            changed = [row for row in after[table] if row not in rows]
            pytest.fail(
                f"{table}: {len(rows)} rows before the replay, {len(after[table])} after; "
                f"{len(changed)} rows new or changed, e.g. {changed[:2]}"
            )
