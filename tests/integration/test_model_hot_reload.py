"""Hot reload end to end: `finsent worker` following the registry, the embedded broker, a fresh
PostgreSQL database, tiny models.

- A promotion published on `model.events` mid-stream switches the running worker between two
  batches: every item is stored exactly once, and in offset order the model version changes
  once, from one item on. A rollback switches it back.
- A champion whose weights were damaged after registration, in its directory and in the
  registry's database copy, is refused at load; the worker keeps serving the old model, says
  so on /health, and loses nothing. (Damaged in the directory only, the worker fetches the
  registry's copy instead: tests/integration/test_model_artifacts*.py.)

The registry poll is set to 10 minutes, so a switch within the test's time can only come
from the event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from services.broker import EmbeddedBroker
from services.learning.registry import promote, rollback
from services.storage import ModelArtifactChunkRow

from .model_support import (
    announce,
    following_env,
    register,
    runs,
    scored_by,
    serving,
    versions_in_offset_order,
)
from .pipeline import (
    PacedProducer,
    PipelineTopics,
    Worker,
    db_counts,
    expected_counts,
    migrated_engine,
    produce,
    wait_for,
)

pytestmark = pytest.mark.integration

STORE_TIMEOUT_S = 120.0
SWITCH_TIMEOUT_S = 60.0
# Loading, verifying and compiling the promoted model takes 10-20 s for the test's tiny model on
# two busy cores (docs/learning.md); the deadline is for a machine many times slower.
PROMOTED_SWITCH_TIMEOUT_S = 300.0


@pytest.fixture
def db_engine(fresh_postgres_url: str) -> Iterator[Engine]:
    with migrated_engine(fresh_postgres_url) as engine:
        yield engine


# The stream runs until the promoted model has scored AFTER_SWITCH items: it is loaded and its
# pass compiled (FINSENT_COMPILE) while the first one goes on serving, however long that takes.
RATE = 150.0
PROMOTE_AT = 300
AFTER_SWITCH = 300


def test_promotion_mid_stream_switches_the_worker_between_batches_and_rollback_switches_back(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    db_engine: Engine,
    saved_model_dir: Path,
    model_variant: Callable[..., Path],
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic, partitions=1)  # one partition: offset order = scoring order
    events_topic = make_topic("model.events")
    first = register(db_engine, saved_model_dir, champion=True)
    second = register(db_engine, model_variant(seed=21))
    env = following_env(kafka_broker, db_engine, topics, events_topic, tmp_path / "home")
    env["FINSENT_COMPILE"] = "true"  # the default served path: the switch waits for the compile
    producer = PacedProducer(kafka_broker.bootstrap, topics.raw, None, rate=RATE)

    with Worker(env, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        assert serving(worker) == first.version
        producer.start()
        wait_for(
            lambda: db_counts(db_engine).news_items,
            lambda n: n >= PROMOTE_AT,
            timeout=STORE_TIMEOUT_S,
            what=f"{PROMOTE_AT} items stored before the promotion",
            workers=[worker],
            interval=0.05,
        )
        with Session(db_engine) as session, session.begin():
            promote(session, second.version, by="test", reason="better on the holdout", now=datetime.now(UTC))
        announce(kafka_broker, events_topic, second, "promoted")
        promoted_at = time.monotonic()
        wait_for(
            lambda: scored_by(db_engine, second.version),
            lambda n: n >= AFTER_SWITCH,
            timeout=PROMOTED_SWITCH_TIMEOUT_S,
            what=f"{AFTER_SWITCH} items scored by the promoted model (the stream goes on until then)",
            workers=[worker],
            interval=0.2,
        )
        print(
            f"\npromotion → {AFTER_SWITCH} items scored by the promoted model: "
            f"{time.monotonic() - promoted_at:.1f} s"
        )
        n_stream = producer.stop()
        wait_for(
            lambda: db_counts(db_engine),
            lambda c: c.predictions >= n_stream,
            timeout=STORE_TIMEOUT_S,
            what=f"all {n_stream} items stored",
            workers=[worker],
            while_progressing=True,  # the backlog built while the promoted model compiled
        )
        assert db_counts(db_engine) == expected_counts(n_stream)  # nothing lost, nothing scored twice
        switched = runs(versions_in_offset_order(db_engine))
        assert [version for version, _ in switched] == [first.version, second.version], switched
        assert switched[0][1] >= PROMOTE_AT and switched[1][1] > 0
        assert "switched model" in worker.log()

        with Session(db_engine) as session, session.begin():
            back = rollback(session, by="test", now=datetime.now(UTC))
            assert back.version == first.version
        announce(kafka_broker, events_topic, first, "rollback")
        wait_for(
            lambda: serving(worker),
            lambda version: version == first.version,
            timeout=PROMOTED_SWITCH_TIMEOUT_S,  # loaded and compiled again
            what="the worker serves the previous champion after the rollback",
            workers=[worker],
        )
        produce(kafka_broker.bootstrap, topics.raw, range(n_stream, n_stream + 100))
        wait_for(
            lambda: db_counts(db_engine).predictions,
            lambda n: n >= n_stream + 100,
            timeout=STORE_TIMEOUT_S,
            what="the items after the rollback stored",
            workers=[worker],
        )
    assert db_counts(db_engine) == expected_counts(n_stream + 100)
    after = runs(versions_in_offset_order(db_engine))
    assert [version for version, _ in after] == [first.version, second.version, first.version], after
    assert after[-1][1] == 100


def damage_stored_weights(engine: Engine, version: str) -> None:
    where = (
        ModelArtifactChunkRow.version == version,
        ModelArtifactChunkRow.file_name == "model.safetensors",
        ModelArtifactChunkRow.chunk_index == 0,
    )
    with Session(engine) as session, session.begin():
        data = bytearray(session.scalars(select(ModelArtifactChunkRow.data).where(*where)).one())
        data[len(data) // 2] ^= 0xFF
        session.execute(update(ModelArtifactChunkRow).where(*where).values(data=bytes(data)))


def test_a_corrupt_champion_is_refused_and_the_worker_keeps_serving(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    db_engine: Engine,
    saved_model_dir: Path,
    model_variant: Callable[..., Path],
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic, partitions=1)
    events_topic = make_topic("model.events")
    first = register(db_engine, saved_model_dir, champion=True)
    damaged_dir = model_variant(seed=33)
    damaged = register(db_engine, damaged_dir)
    env = following_env(kafka_broker, db_engine, topics, events_topic, tmp_path / "home")

    with Worker(env, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        with Session(db_engine) as session, session.begin():
            promote(session, damaged.version, by="test", reason="passed the gate", now=datetime.now(UTC))
        weights = damaged_dir / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF  # damaged after the promotion was verified: on disk, in a copy, …
        weights.write_bytes(bytes(data))
        damage_stored_weights(db_engine, damaged.version)  # and the registry's copy, else it is fetched
        announce(kafka_broker, events_topic, damaged, "promoted")
        health = wait_for(
            worker.health,
            lambda h: h is not None and bool(h[1].get("model_refused")),
            timeout=SWITCH_TIMEOUT_S,
            what="the worker reports the refused model on /health",
            workers=[worker],
        )
        assert health is not None
        assert health[1]["model_version"] == first.version
        assert damaged.version in health[1]["model_refused"]
        assert "does not match its manifest hash" in worker.log()
        produce(kafka_broker.bootstrap, topics.raw, range(200))
        wait_for(
            lambda: db_counts(db_engine).predictions,
            lambda n: n >= 200,
            timeout=STORE_TIMEOUT_S,
            what="items scored after the refusal",
            workers=[worker],
        )
        worker.assert_alive()
    assert db_counts(db_engine) == expected_counts(200)
    assert set(versions_in_offset_order(db_engine)) == {first.version}
