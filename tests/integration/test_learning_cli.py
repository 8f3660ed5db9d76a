"""`finsent models` on PostgreSQL with a broker configured: every champion change is
announced on model.events, in order, and an unreachable broker is one line (the change stands)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bert_core.artifacts import read_manifest
from services.broker import EmbeddedBroker
from services.cli import app
from services.learning.events import EVENT_KEY, ModelEvent
from services.settings import get_settings
from services.storage import ModelVersionRow, make_engine

pytestmark = pytest.mark.integration


def invoke(*args: str, **env: str) -> Any:
    get_settings.cache_clear()
    try:
        unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}
        return CliRunner().invoke(app, list(args), env={**unset, **env})
    finally:
        get_settings.cache_clear()


def test_promotions_and_rollbacks_are_announced(
    fresh_postgres_url: str,
    kafka_broker: EmbeddedBroker,
    consume_topic: Callable[..., Any],
    model_variant: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    topic = f"model.events-{uuid.uuid4().hex[:12]}"  # created on first use by the command
    env = {
        "FINSENT_DATABASE_URL": fresh_postgres_url,
        "FINSENT_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "FINSENT_TOPIC_MODEL_EVENTS": topic,
    }
    first, second = model_variant(seed=21), model_variant(seed=22)
    v1, v2 = read_manifest(first).version, read_manifest(second).version

    result = invoke("models", "register", str(first), "--champion", **env)
    assert result.exit_code == 0, result.output
    assert f"announced on {topic} ({kafka_broker.bootstrap})" in result.stdout
    result = invoke("models", "register", str(second), **env)
    assert result.exit_code == 0, result.output
    result = invoke("models", "promote", v2, "--yes", **env)
    assert result.exit_code == 0, result.output
    result = invoke("models", "rollback", "--yes", **env)
    assert result.exit_code == 0 and f"{v1} is the champion again; {v2} rejected" in result.stdout, (
        result.output
    )

    records = consume_topic(topic, expected=3)
    assert all(r.key == EVENT_KEY for r in records)
    events = [ModelEvent.from_json(r.value) for r in records]
    assert [(e.kind, e.version, e.path) for e in events] == [
        ("promoted", v1, str(first.resolve())),
        ("promoted", v2, str(second.resolve())),
        ("rollback", v1, str(first.resolve())),
    ]
    assert events[0].sha256 == read_manifest(first).files["model.safetensors"]

    # The broker is gone: the promotion still happens, the command says so in one line, exit 1.
    third = model_variant(seed=23)
    assert invoke("models", "register", str(third), **env).exit_code == 0
    v3 = read_manifest(third).version
    result = invoke(
        "models",
        "promote",
        v3,
        "--yes",
        **{**env, "FINSENT_KAFKA_BOOTSTRAP": "127.0.0.1:9", "FINSENT_KAFKA_TIMEOUT_SECONDS": "2"},
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(
        f"finsent: error: {v3} is the champion, but announcing it on {topic} failed"
    )
    assert result.stderr.count("\n") == 1
    engine = make_engine(fresh_postgres_url)
    try:
        with Session(engine) as session:
            got = {r.version: r.status for r in session.scalars(select(ModelVersionRow))}
    finally:
        engine.dispose()
    assert got == {v1: "retired", v2: "rejected", v3: "champion"}
    # Re-running announces the (unchanged) champion once the broker is back.
    result = invoke("models", "promote", v3, "--yes", **env)
    assert result.exit_code == 0 and f"{v3} is already the champion" in result.stdout, result.output
    records = consume_topic(topic, expected=4)
    assert ModelEvent.from_json(records[-1].value).version == v3
