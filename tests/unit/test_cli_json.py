"""`--json` on the read commands (`models list`, `labels list | stats`, `subscriptions list`)
on SQLite: the documented keys, values that match the table, and valid JSON when empty."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bert_core.artifacts import read_manifest
from services.cli import app
from services.settings import get_settings

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory


def invoke(db: Path, *args: str) -> Any:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, list(args), env={**CLEAN_ENV, "FINSENT_DATABASE_URL": f"sqlite:///{db}"}
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result


def as_json(db: Path, *args: str) -> Any:
    return json.loads(invoke(db, *args, "--json").stdout)


def test_empty_lists_are_json_arrays(tmp_path: Path) -> None:
    db = tmp_path / "finsent.db"
    invoke(db, "db", "upgrade")  # `models list` only reads: it does not create the database
    assert as_json(db, "models", "list") == []
    assert as_json(db, "labels", "list") == []
    assert as_json(db, "subscriptions", "list") == []
    assert as_json(db, "labels", "stats") == {
        "labels": 0,
        "texts": {},
        "labellers": 0,
        "disagreements": 0,
        "newest_label_id": 0,
        "by_task_split": [],
    }


def test_labels_list_and_stats(tmp_path: Path) -> None:
    db = tmp_path / "finsent.db"
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "text,task,label,labeller\n"
        "Oil major cuts output,sentiment,bearish,anna\n"
        "Oil major cuts output,sentiment,neutral,ben\n"
        "Chipmaker beats estimates,topic,Earnings,anna\n",
        encoding="utf-8",
    )
    invoke(db, "labels", "import", str(labels))
    listed = as_json(db, "labels", "list")
    assert [list(r) for r in listed] == [
        ["id", "task", "label", "labeller", "split", "source", "event_id", "text", "created_at", "updated_at"]
    ] * 3
    assert [(r["labeller"], r["label"]) for r in listed] == [
        ("anna", "Earnings"),
        ("ben", "neutral"),
        ("anna", "bearish"),
    ]
    assert listed[0]["source"] == "import:labels.csv" and listed[0]["text"] == "Chipmaker beats estimates"
    assert [r["task"] for r in as_json(db, "labels", "list", "--task", "topic")] == ["topic"]

    stats = as_json(db, "labels", "stats")
    assert stats["labels"] == 3 and stats["labellers"] == 2 and stats["disagreements"] == 1
    assert stats["texts"] == {"sentiment": 1, "topic": 1}
    assert sum(row["labels"] for row in stats["by_task_split"]) == 3
    assert stats["newest_label_id"] == listed[0]["id"]
    [disagreement] = as_json(db, "labels", "disagreements")
    assert disagreement["task"] == "sentiment" and disagreement["text"] == "Oil major cuts output"
    assert disagreement["labels"] == {"anna": "bearish", "ben": "neutral"}
    assert set(disagreement) == {"task", "text", "labels", "last_updated"}


def test_subscriptions_list_hides_secrets(tmp_path: Path) -> None:
    db = tmp_path / "finsent.db"
    invoke(db, "subscriptions", "add", "--name", "desk", "--channel", "slack",
           "--target", "https://hooks.slack.com/services/T0/B0/secret-token", "--scope", "ticker",
           "--min-severity", "high")  # fmt: skip
    [sub] = as_json(db, "subscriptions", "list")
    assert sub == {
        "name": "desk",
        "channel": "slack",
        "target": "https://hooks.slack.com/…",
        "scopes": ["ticker"],
        "keys": [],
        "min_severity": "high",
        "digest_minutes": None,
        "enabled": True,
    }


def test_models_list_matches_models_show(tmp_path: Path, model_variant: Callable[..., Path]) -> None:
    db = tmp_path / "finsent.db"
    model = model_variant(seed=21)
    version = read_manifest(model).version
    invoke(db, "models", "register", str(model), "--champion", "--by", "ops")
    [listed] = as_json(db, "models", "list")
    assert listed == as_json(db, "models", "show", version)
    assert listed["version"] == version and listed["status"] == "champion"
    assert set(listed) == {
        "version", "status", "parent", "created_at", "status_changed_at", "path", "sha256", "data_hash",
        "dev", "history",
    }  # fmt: skip
    assert as_json(db, "models", "list", "--status", "retired") == []
