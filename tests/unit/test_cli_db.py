"""`finsent db upgrade | current` on SQLite, and the one-line error for an unreachable server.

Successful runs use typer's CliRunner in-process; the error path runs the real entry point
`python -m services` in a subprocess, as a user would see it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.settings import get_settings
from services.storage import current_revision, head_revision

# FINSENT_* variables of the caller must not leak into the tests.
CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


def invoke(args: list[str], **env: str) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, env={**CLEAN_ENV, **env})
    finally:
        get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory


def test_db_upgrade_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/data/finsent.db"
    result = invoke(["db", "current"], FINSENT_DATABASE_URL=url)
    assert result.exit_code == 2, result.output
    assert "no database at" in result.output and "finsent db upgrade" in result.output
    assert not (tmp_path / "data").exists()  # a read creates nothing

    result = invoke(["db", "upgrade"], FINSENT_DATABASE_URL=url)
    assert result.exit_code == 0, result.output
    assert f"upgraded from revision (empty) to {head_revision()}" in result.stdout
    assert current_revision(url) == head_revision()

    result = invoke(["db", "upgrade"], FINSENT_DATABASE_URL=url)
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.stdout

    result = invoke(["db", "current"], FINSENT_DATABASE_URL=url)
    assert result.exit_code == 0, result.output
    assert f"is at revision {head_revision()} (newest)" in result.stdout


def test_default_database_lives_in_home(tmp_path: Path) -> None:
    result = invoke(["db", "upgrade"], FINSENT_HOME=str(tmp_path / "home"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "finsent.db").is_file()


def test_unknown_revision_is_a_one_line_error(tmp_path: Path) -> None:
    result = invoke(["db", "upgrade", "9999"], FINSENT_DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == 2
    assert "finsent: error:" in result.stderr and "9999" in result.stderr


def test_unreachable_postgres_is_a_one_line_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env["FINSENT_DATABASE_URL"] = "postgresql+psycopg://finsent:s3cret@127.0.0.1:1/finsent"
    proc = subprocess.run(
        [sys.executable, "-m", "services", "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "finsent: error: database postgresql+psycopg://finsent:***@127.0.0.1:1/finsent"
    )
    assert "s3cret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("revision", "message"),
    [
        ("head+1", "no revision after the newest ({head}): 'head+1' goes 1 past it"),
        ("+1", "no revision after the newest ({head}): '+1' goes 1 past it"),
        ("0001+20", "no revision after the newest ({head}): '0001+20' goes"),
        # Alembic would do nothing and exit 0: say that upgrade never downgrades.
        (
            "0001",
            "target revision 0001 is older than the database's revision {head}: `finsent db upgrade` "
            "never goes backwards (migrations are not undone)",
        ),
        ("head-1", "is older than the database's revision {head}: `finsent db upgrade` never goes backwards"),
        ("base", "target revision base (the empty schema) is older than the database's revision {head}"),
    ],
)
def test_an_upgrade_target_past_the_newest_or_behind_the_database_is_one_line(
    tmp_path: Path, revision: str, message: str
) -> None:
    url = f"sqlite:///{tmp_path}/finsent.db"
    assert invoke(["db", "upgrade"], FINSENT_DATABASE_URL=url).exit_code == 0
    result = invoke(["db", "upgrade", "--", revision], FINSENT_DATABASE_URL=url)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("finsent: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message.format(head=head_revision()) in result.stderr
    assert current_revision(url) == head_revision()


def test_relative_upgrade_targets_still_work(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/finsent.db"
    result = invoke(["db", "upgrade", "+1"], FINSENT_DATABASE_URL=url)
    assert result.exit_code == 0, result.output
    assert current_revision(url) == "0001"
    result = invoke(["db", "upgrade", "0001+1"], FINSENT_DATABASE_URL=url)
    assert result.exit_code == 0, result.output
    assert "upgraded from revision 0001 to 0002" in result.stdout
    result = invoke(["db", "upgrade", "0002"], FINSENT_DATABASE_URL=url)
    assert result.exit_code == 0 and "is at revision 0002: nothing to do" in result.stdout
    assert (
        invoke(["db", "upgrade", "base"], FINSENT_DATABASE_URL=f"sqlite:///{tmp_path}/new.db").exit_code == 0
    )


def test_db_current_on_an_in_memory_database_says_there_is_nothing_to_check() -> None:
    result = invoke(["db", "current"], FINSENT_DATABASE_URL="sqlite://")
    assert result.exit_code == 2, result.output
    assert "in-memory database has no schema to check" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["labels", "list"],
        ["labels", "stats"],
        ["labels", "disagreements"],
        ["alerts", "list"],
        ["alerts", "show", "1"],
        ["subscriptions", "list"],
    ],
)
def test_list_and_show_commands_create_no_database(tmp_path: Path, command: list[str]) -> None:
    url = f"sqlite:///{tmp_path}/typo/finsent.db"
    result = invoke(command, FINSENT_DATABASE_URL=url)
    assert result.exit_code == 2, result.output
    assert "no database at" in result.output
    assert not (tmp_path / "typo").exists()
