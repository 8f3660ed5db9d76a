"""`finsent config`: every setting with its effective value and where it came from
(environment over .env over default), passwords masked, as a table or JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.settings import FlatSettings, get_settings

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the .env file is read from the working directory


def invoke(*args: str, **env: str) -> Any:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["config", *args], env={**CLEAN_ENV, **env})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result


def test_sources_and_masking(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FINSENT_SEED=7\nFINSENT_LOG_LEVEL=DEBUG\n", encoding="utf-8")
    rows = json.loads(
        invoke(
            "--json",
            FINSENT_LOG_LEVEL="WARNING",  # the environment wins over .env
            FINSENT_DATABASE_URL="postgresql://bob:hunter2@db.example:5432/finsent",
        ).stdout
    )
    by_name = {r["name"]: r for r in rows}
    assert list(by_name) == list(FlatSettings.model_fields)
    assert set(rows[0]) == {"group", "name", "variable", "value", "source"}
    assert by_name["seed"] == {
        "group": "training",
        "name": "seed",
        "variable": "FINSENT_SEED",
        "value": 7,
        "source": ".env",
    }
    assert by_name["log_level"]["value"] == "WARNING" and by_name["log_level"]["source"] == "environment"
    assert by_name["database_url"] == {
        "group": "database",
        "name": "database_url",
        "variable": "FINSENT_DATABASE_URL",
        "value": "postgresql://bob:****@db.example:5432/finsent",
        "source": "environment",
    }
    assert by_name["topic_partitions"] == {
        "group": "kafka",
        "name": "topic_partitions",
        "variable": "FINSENT_TOPIC_PARTITIONS",
        "value": 4,
        "source": "default",
    }
    assert by_name["kafka_bootstrap"]["value"] is None


def test_table_and_changed_only(tmp_path: Path) -> None:
    url = "postgresql://bob:hunter2@db.example/finsent"
    table = invoke(FINSENT_DATABASE_URL=url).stdout
    assert "hunter2" not in table
    lines = table.splitlines()
    assert lines[0].split() == ["GROUP", "VARIABLE", "VALUE", "SOURCE"]
    assert len(lines) == 1 + len(FlatSettings.model_fields)
    assert any(line.split() == ["inference", "FINSENT_COMPILE", "true", "default"] for line in lines)

    changed = json.loads(
        invoke("--changed", "--json", FINSENT_DATABASE_URL=url, FINSENT_COMPILE="false").stdout
    )
    # FINSENT_HOME is set for every test by tests/conftest.py (a home of its own)
    assert [(r["variable"], r["value"]) for r in changed if r["variable"] != "FINSENT_HOME"] == [
        ("FINSENT_COMPILE", False),
        ("FINSENT_DATABASE_URL", "postgresql://bob:****@db.example/finsent"),
    ]
