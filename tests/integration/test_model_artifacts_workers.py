"""Two `finsent worker` processes on two "hosts" (two FINSENT_HOMEs, no shared model folder:
the directories the models were registered from are gone) both serve the champion, fetched
from the registry's database copy, and both follow a promotion."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from services.broker import EmbeddedBroker
from services.learning.registry import promote
from services.storage import ModelVersionRow

from .model_support import announce, following_env, register, scored_by, serving
from .pipeline import PipelineTopics, Worker, migrated_engine, produce, wait_for

pytestmark = pytest.mark.integration

SWITCH_TIMEOUT_S = 300.0  # fetch, verify, load and compile the tiny model on two busy cores
STORE_TIMEOUT_S = 120.0


@pytest.fixture
def db_engine(fresh_postgres_url: str) -> Iterator[Engine]:
    with migrated_engine(fresh_postgres_url) as engine:
        yield engine


def register_elsewhere(
    engine: Engine, source: Path, trainer: Path, *, champion: bool = False
) -> ModelVersionRow:
    """Registered from a directory on the "trainer host", which then goes away."""
    copy = trainer / source.name
    shutil.copytree(source, copy)
    row = register(engine, copy, champion=champion)
    shutil.rmtree(copy)
    return row


def test_two_hosts_fetch_and_serve_the_champion_and_follow_a_promotion(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    db_engine: Engine,
    saved_model_dir: Path,
    model_variant: Callable[..., Path],
    tmp_path: Path,
) -> None:
    topics = PipelineTopics.create(make_topic, partitions=1)
    events_topic = make_topic("model.events")
    trainer = tmp_path / "trainer"
    trainer.mkdir()
    first = register_elsewhere(db_engine, saved_model_dir, trainer, champion=True)
    second = register_elsewhere(db_engine, model_variant(seed=31), trainer)
    assert not Path(first.path).exists() and not Path(second.path).exists()
    homes = [tmp_path / "host-a", tmp_path / "host-b"]

    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                Worker(
                    following_env(kafka_broker, db_engine, topics, events_topic, home),
                    tmp_path / f"{home.name}.log",
                )
            )
            for home in homes
        ]
        for worker in workers:
            worker.wait_ready()
            assert serving(worker) == first.version
        for home in homes:
            assert (home / "models" / "cache" / first.version / "model.safetensors").is_file()

        with Session(db_engine) as session, session.begin():
            promote(session, second.version, by="test", reason="two hosts", now=datetime.now(UTC))
        announce(kafka_broker, events_topic, second, "promoted")
        for worker in workers:
            wait_for(
                lambda worker=worker: serving(worker),  # type: ignore[misc]
                lambda version: version == second.version,
                timeout=SWITCH_TIMEOUT_S,
                what="both workers serve the promoted model, fetched from the registry",
                workers=workers,
            )
        for home in homes:
            assert (home / "models" / "cache" / second.version / "model.safetensors").is_file()
        produce(kafka_broker.bootstrap, topics.raw, range(50))
        wait_for(
            lambda: scored_by(db_engine, second.version),
            lambda n: n >= 50,
            timeout=STORE_TIMEOUT_S,
            what="the items scored by the promoted model",
            workers=workers,
        )
        for worker in workers:
            assert "fetched from the registry" in worker.log()
