"""The scorer pipeline on SQLite, the embedded default database, end to end (embedded broker,
the tiny model, `finsent worker` as a subprocess): every item stored exactly once, every item
on news.scored, every offset committed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from services.broker import EmbeddedBroker

from .pipeline import (
    READY_TIMEOUT_S,
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
    wait_for,
    wait_until_processed,
    worker_env,
)

pytestmark = pytest.mark.integration

N_ITEMS = 1_000
STORE_TIMEOUT_S = READY_TIMEOUT_S + 120.0  # a deadline: the wait includes the worker's start
COMMIT_TIMEOUT_S = 30.0


def test_worker_on_sqlite_stores_every_item_exactly_once(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list],
    saved_model_dir: Path,
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic)
    group = new_group()
    url = f"sqlite:///{(tmp_path / 'db' / 'finsent.db').as_posix()}"
    env = worker_env(
        bootstrap=kafka_broker.bootstrap,
        database_url=url,
        model_dir=saved_model_dir,
        topics=topics,
        group=group,
        home=tmp_path / "home",
    )
    expected = expected_counts(N_ITEMS)
    with migrated_engine(url) as engine, Worker(env, tmp_path / "worker.log") as worker:
        produce(kafka_broker.bootstrap, topics.raw, range(N_ITEMS))
        progress = wait_until_processed(
            engine,
            N_ITEMS,
            bootstrap=kafka_broker.bootstrap,
            group=group,
            topic=topics.raw,
            workers=[worker],
            timeout=STORE_TIMEOUT_S,
        )
        assert progress.rows == expected, f"{progress}\n{worker.tail()}"

        out = consume_topic(topics.scored, expected=N_ITEMS, timeout=60)
        per_item = Counter(scored_ids(out))
        assert set(per_item) == {event_id(i) for i in range(N_ITEMS)}
        assert set(per_item.values()) == {1}, per_item.most_common(3)
        wait_for(
            lambda: committed_total(kafka_broker.bootstrap, group, topics.raw),
            lambda total: total == N_ITEMS,
            timeout=COMMIT_TIMEOUT_S,
            what=f"the worker commits all {N_ITEMS} records",
            workers=[worker],
        )
        assert db_counts(engine) == expected
        code = worker.stop()
    assert code == 0, worker.tail()
