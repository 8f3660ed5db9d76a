"""Two scorer workers in one consumer group, end to end (embedded broker, fresh PostgreSQL, the
tiny model, `finsent worker` subprocesses): the group splits the 4 partitions of news.raw
between them, each scores and stores exactly the items of its own partitions, and the totals
are exact.

The assignment is read from each worker's log (the Kafka consumer logs every new assignment,
faust logs "Worker ready" when it starts processing it) and checked against each worker's
`/health`: Tansu's DescribeGroups answer is not decodable by kafka-python's admin client.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from services.broker import EmbeddedBroker

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
    produce,
    rows_per_partition,
    scored_ids,
    tails,
    wait_for,
    wait_until_processed,
    worker_env,
)

pytestmark = pytest.mark.integration

N_ITEMS = 1_000
JOIN_TIMEOUT_S = READY_TIMEOUT_S  # both workers start (model load and compile) and join
STORE_TIMEOUT_S = 120.0
COMMIT_TIMEOUT_S = 30.0


@pytest.fixture
def db_engine(fresh_postgres_url: str) -> Iterator[Engine]:
    with migrated_engine(fresh_postgres_url) as engine:
        yield engine


def _split(workers: list[Worker], topic: str) -> list[frozenset[int]] | None:
    """Each worker's partitions once both settled on a split of all partitions, else None."""
    sets = [worker.settled_assignment(topic) for worker in workers]
    if any(not s for s in sets):
        return None
    assigned = [s for s in sets if s]
    if len(frozenset().union(*assigned)) != sum(map(len, assigned)):  # overlap: stale assignment
        return None
    if frozenset().union(*assigned) != frozenset(range(PARTITIONS)):
        return None
    return assigned


def test_two_workers_in_one_group_split_the_partitions_and_store_each_item_once(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    consume_topic: Callable[..., list],
    db_engine: Engine,
    saved_model_dir: Path,
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic)
    group = new_group()
    url = db_engine.url.render_as_string(hide_password=False)
    envs = [
        worker_env(  # each with its own metrics port
            bootstrap=kafka_broker.bootstrap,
            database_url=url,
            model_dir=saved_model_dir,
            topics=topics,
            group=group,
            home=tmp_path / f"home-{n}",
        )
        for n in (1, 2)
    ]
    assert envs[0]["FINSENT_SCORER_METRICS_PORT"] != envs[1]["FINSENT_SCORER_METRICS_PORT"]
    expected = expected_counts(N_ITEMS)

    with (
        Worker(envs[0], tmp_path / "worker-1.log", name="worker 1") as w1,
        Worker(envs[1], tmp_path / "worker-2.log", name="worker 2") as w2,
    ):
        workers = [w1, w2]
        split = wait_for(
            lambda: _split(workers, topics.raw),
            lambda s: s is not None,
            timeout=JOIN_TIMEOUT_S,
            what=f"both workers settled on a split of the {PARTITIONS} partitions",
            workers=workers,
        )
        assert split is not None
        rebalances = [len(w.assignments(topics.raw)) for w in workers]

        produce(kafka_broker.bootstrap, topics.raw, range(N_ITEMS))
        progress = wait_until_processed(
            db_engine,
            N_ITEMS,
            bootstrap=kafka_broker.bootstrap,
            group=group,
            topic=topics.raw,
            workers=workers,
            timeout=STORE_TIMEOUT_S,
        )
        assert progress.rows == expected, f"{progress}\n" + tails(workers)
        wait_for(
            lambda: committed_total(kafka_broker.bootstrap, group, topics.raw),
            lambda total: total == N_ITEMS,
            timeout=COMMIT_TIMEOUT_S,
            what=f"the group commits all {N_ITEMS} records",
            workers=workers,
        )
        assert db_counts(db_engine) == expected
        # The group stayed as it was: no rebalance moved partitions while the items were processed.
        assert [len(w.assignments(topics.raw)) for w in workers] == rebalances, [
            w.assignments(topics.raw) for w in workers
        ]
        assert [w.settled_assignment(topics.raw) for w in workers] == split
        # Each worker's own /health reports the same partitions.
        for worker, partitions in zip(workers, split, strict=True):
            answer = worker.health()
            assert answer is not None and answer[0] == 200, f"{worker.name} /health: {answer}"
            reported = {p["partition"] for p in answer[1]["assigned_partitions"] if p["topic"] == topics.raw}
            assert reported == partitions, f"{worker.name}: /health {answer[1]}, log {sorted(partitions)}"

        # Each worker stored exactly the items of its own partitions, and some of them.
        per_partition = rows_per_partition(db_engine)
        assert sum(per_partition.values()) == N_ITEMS
        for worker, partitions in zip(workers, split, strict=True):
            stored = sum(s for _, s, _ in worker.batches())
            own = sum(per_partition.get(p, 0) for p in partitions)
            assert stored == own > 0, (
                f"{worker.name} has partitions {sorted(partitions)} holding {own} items, "
                f"but logged {stored} stored\n{worker.tail()}"
            )

        out = consume_topic(topics.scored, expected=N_ITEMS, timeout=60)
        per_item = Counter(scored_ids(out))
        assert set(per_item) == {event_id(i) for i in range(N_ITEMS)}
        assert set(per_item.values()) == {1}, per_item.most_common(3)
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], tails(workers)
    print(f"\npartitions: worker 1 {sorted(split[0])}, worker 2 {sorted(split[1])}; items {per_partition}")
