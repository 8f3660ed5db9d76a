"""`current_revision` (services.storage.migrate) only reads: it never creates a SQLite file,
and with `must_exist` (`finsent db current`) says that there is no database instead."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.settings import get_settings
from services.storage import NoDatabaseError, current_revision, head_revision, upgrade_database

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


def test_a_missing_file_has_no_revision_and_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "typo" / "x.db"
    assert current_revision(f"sqlite:///{db}") is None
    assert not db.parent.exists()


def test_must_exist_says_there_is_no_database(tmp_path: Path) -> None:
    db = tmp_path / "typo" / "x.db"
    with pytest.raises(NoDatabaseError) as caught:
        current_revision(f"sqlite:///{db}", must_exist=True)
    assert caught.value.strerror == f"no database at {db} (run `finsent db upgrade` to create it)"
    assert not db.parent.exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_has_no_schema_to_check(url: str) -> None:
    with pytest.raises(NoDatabaseError, match="an in-memory database has no schema to check"):
        current_revision(url, must_exist=True)


def test_an_existing_database_reports_its_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade_database(url)
    assert current_revision(url) == current_revision(url, must_exist=True) == head_revision()


def test_db_current_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory
    db = tmp_path / "typo" / "x.db"
    get_settings.cache_clear()
    try:
        result: Any = CliRunner().invoke(
            app, ["db", "current"], env={**CLEAN_ENV, "FINSENT_DATABASE_URL": f"sqlite:///{db}"}
        )
    finally:
        get_settings.cache_clear()
    assert "Traceback" not in result.output
    assert not db.parent.exists()
