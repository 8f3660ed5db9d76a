"""Helpers of the model registry tests: a worker that follows the registry, registering and
announcing models, and reading which model scored what."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from services.broker import EmbeddedBroker
from services.learning.events import ModelEvent, publish_model_event
from services.learning.registry import promote, register_model
from services.storage import ModelVersionRow, NewsItemRow, PredictionRow

from .pipeline import PipelineTopics, Worker, new_group, worker_env


def following_env(
    kafka_broker: EmbeddedBroker, db_engine: Engine, topics: PipelineTopics, events_topic: str, home: Path
) -> dict[str, str]:
    """A worker that follows the registry (FINSENT_MODEL unset) and hears promotions only
    through `events_topic` within the test's time."""
    env = worker_env(
        bootstrap=kafka_broker.bootstrap,
        database_url=db_engine.url.render_as_string(hide_password=False),
        model_dir=home,  # replaced below: the registry chooses the model
        topics=topics,
        group=new_group(),
        home=home,
    )
    del env["FINSENT_MODEL"]
    env["FINSENT_TOPIC_MODEL_EVENTS"] = events_topic
    env["FINSENT_MODEL_POLL_SECONDS"] = "600"
    return env


def register(engine: Engine, model_dir: Path, *, champion: bool = False) -> ModelVersionRow:
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        row = register_model(session, model_dir, now=now)
        if champion:
            row = promote(session, row.version, by="test", reason="starting champion", now=now)
        session.expunge(row)
    return row


def announce(
    kafka_broker: EmbeddedBroker, topic: str, row: ModelVersionRow, kind: Literal["promoted", "rollback"]
) -> None:
    event = ModelEvent(kind=kind, version=row.version, path=row.path, sha256=row.sha256, at=datetime.now(UTC))
    publish_model_event(kafka_broker.bootstrap, topic, event, timeout=10)


def versions_in_offset_order(engine: Engine) -> list[str]:
    stmt = (
        select(PredictionRow.model_version)
        .join(NewsItemRow, NewsItemRow.event_id == PredictionRow.event_id)
        .order_by(NewsItemRow.kafka_offset)
    )
    with Session(engine) as session:
        return list(session.scalars(stmt))


def scored_by(engine: Engine, version: str) -> int:
    """How many predictions `version` has stored."""
    stmt = select(func.count()).select_from(PredictionRow).where(PredictionRow.model_version == version)
    with Session(engine) as session:
        return int(session.scalar(stmt) or 0)


def runs(versions: list[str]) -> list[tuple[str, int]]:
    """Run-length encoding: [("a", 300), ("b", 1200)]."""
    out: list[tuple[str, int]] = []
    for version in versions:
        if out and out[-1][0] == version:
            out[-1] = (version, out[-1][1] + 1)
        else:
            out.append((version, 1))
    return out


def serving(worker: Worker) -> str | None:
    health = worker.health()
    return None if health is None else health[1].get("model_version")
