"""`finsent labels ...` and `finsent models ...` on SQLite, as a user runs them: counts and
bad rows of an import, the registry's list/show/register/promote/rollback with confirmation,
and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bert_core.artifacts import read_manifest
from services.cli import app
from services.learning import registry
from services.settings import get_settings
from services.storage import LabelRow, ModelVersionRow, make_engine

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "finsent.db"


def invoke(db: Path, *args: str, input: str | None = None, **env: str) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            app, list(args), input=input, env={**CLEAN_ENV, "FINSENT_DATABASE_URL": f"sqlite:///{db}", **env}
        )
    finally:
        get_settings.cache_clear()


def stored(db: Path, model: type[Any]) -> list[Any]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            return list(session.scalars(select(model)))
    finally:
        engine.dispose()


def one_line_error(result: Any, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("finsent: error: ") and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_every_command_has_help(db: Path) -> None:
    for group, commands in {
        "labels": ("import", "list", "stats", "disagreements"),
        "models": ("list", "show", "register", "promote", "rollback"),
    }.items():
        result = invoke(db, group, "--help")
        assert result.exit_code == 0 and all(c in result.stdout for c in commands), result.output
        for command in commands:
            result = invoke(db, group, command, "--help")
            assert result.exit_code == 0 and "Usage:" in result.stdout, (group, command, result.output)
    assert not db.exists()


def test_labels_import_reports_counts_and_bad_rows(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "text,task,label,labeller,comment\n"
        "Oil jumps as OPEC cuts output,topic,energy / oil,,x\n"
        "Acme misses estimates,sentiment,0,bob,\n"
        "Acme misses estimates,sentiment,bullish,ann,\n"
        "Gold slips,topic,Gold,,\n"
        ",sentiment,1,,\n",
        encoding="utf-8",
    )
    result = invoke(db, "labels", "import", str(path), "--labeller", "ann")
    assert result.exit_code == 1, result.output  # the good rows are stored, but not every row
    assert result.stdout == f"{path}: 5 row(s): 3 imported, 0 updated, 0 unchanged, 2 rejected\n"
    assert result.stderr.splitlines() == [
        "note: ignored column(s): comment",
        "  row 5: unknown topic label 'Gold'; expected an id 0-19 or one of: "
        + result.stderr.split("one of: ")[1].split("\n")[0],
        "  row 6: needs a text or an event_id (both are empty)",
        f"finsent: error: {path}: 2 of 5 row(s) rejected, the others stored; fix them and import the "
        "file again (stored rows stay unchanged), or use --strict to store none",
    ]
    labels = stored(db, LabelRow)
    assert sorted((r.labeller, r.label, r.source) for r in labels) == [
        ("ann", "Energy / Oil", "import:labels.csv"),
        ("ann", "bullish", "import:labels.csv"),
        ("bob", "bearish", "import:labels.csv"),
    ]

    path.write_text("text,task,label\nAcme misses estimates,sentiment,neutral\n", encoding="utf-8")
    result = invoke(db, "labels", "import", str(path), "--labeller", "ann", "--source", "desk review")
    assert result.exit_code == 0, result.output
    assert "0 imported, 1 updated, 0 unchanged, 0 rejected" in result.stdout and result.stderr == ""

    result = invoke(db, "labels", "list", "--task", "sentiment")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "TASK", "LABEL", "LABELLER", "SPLIT", "UPDATED", "TEXT"]
    assert len(lines) == 3 and "neutral" in lines[1] and "ann" in lines[1] and "bearish" in lines[2]

    result = invoke(db, "labels", "stats")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "3 label(s) on 2 text(s) by 2 labeller(s); 1 disagreement(s); newest label id "
    )

    result = invoke(db, "labels", "disagreements")
    assert result.exit_code == 0, result.output
    assert "Acme misses estimates" in result.stdout and "ann: neutral; bob: bearish" in result.stdout


def test_strict_import_stores_nothing_and_exits_1(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"text": "fine", "task": "topic", "label": 3}\n{"text": "bad", "task": "mood", "label": 1}\n'
    )
    result = invoke(db, "labels", "import", str(path), "--strict", "--labeller", "ann")
    assert result.exit_code == 1, result.output
    assert "  row 2: unknown task 'mood'; expected one of: topic, sentiment" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"finsent: error: {path}: 1 of 2 row(s) are bad; nothing imported (--strict)"
    )
    assert stored(db, LabelRow) == []


# One unterminated quote on row 3 of six label rows: csv's lenient reader takes the rest of the
# file as that row's text (2 rows, exit 0 before); each of the other five is a row of its own.
STRAY_QUOTE_CSV = (
    "text,task,label\n"
    "Oil jumps as OPEC cuts output,topic,energy / oil\n"
    '"Acme misses estimates,sentiment,bearish\n'
    "Gold slips,topic,10\n"
    "Fed holds rates,topic,1\n"
    "Tesla rises,sentiment,bullish\n"
    "Apple beats,sentiment,1\n"
)


def test_a_stray_quote_rejects_its_row_and_never_merges_the_next_ones(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(STRAY_QUOTE_CSV, encoding="utf-8")
    result = invoke(db, "labels", "import", str(path), "--labeller", "ann")
    assert result.exit_code == 1, result.output
    assert result.stdout == f"{path}: 6 row(s): 5 imported, 0 updated, 0 unchanged, 1 rejected\n"
    errors = result.stderr.splitlines()
    assert errors[0].startswith("  row 3: a quote opened in this row is never closed"), errors
    assert errors[1].startswith(f"finsent: error: {path}: 1 of 6 row(s) rejected") and len(errors) == 2
    assert sorted(r.text for r in stored(db, LabelRow)) == [
        "Apple beats",
        "Fed holds rates",
        "Gold slips",
        "Oil jumps as OPEC cuts output",
        "Tesla rises",
    ]

    # The row fixed, the same file again: only that row is new, the others are unchanged.
    path.write_text(STRAY_QUOTE_CSV.replace('"Acme', "Acme"), encoding="utf-8")
    result = invoke(db, "labels", "import", str(path), "--labeller", "ann")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: 6 row(s): 1 imported, 0 updated, 5 unchanged, 0 rejected\n"
    assert result.stderr == ""


def test_a_stray_quote_with_strict_stores_nothing(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(STRAY_QUOTE_CSV, encoding="utf-8")
    result = invoke(db, "labels", "import", str(path), "--strict", "--labeller", "ann")
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[0].startswith("  row 3: a quote opened in this row is never closed")
    assert result.stderr.splitlines()[-1] == (
        f"finsent: error: {path}: 1 of 6 row(s) are bad; nothing imported (--strict)"
    )
    assert stored(db, LabelRow) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "labels.csv: no rows"),
        ("text,task,label\n", "labels.csv: no rows"),
        (
            "text,task,sentiment\nOil jumps,topic,6\n",
            "missing column(s) label (found: text, task, sentiment)",
        ),
    ],
    ids=["empty", "header-only", "wrong-column"],
)
def test_a_file_that_cannot_be_imported_is_one_line_and_stores_nothing(
    db: Path, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(content, encoding="utf-8")
    one_line_error(invoke(db, "labels", "import", str(path), "--labeller", "ann"), 2, message)
    assert not db.exists()  # the file is refused before the database is even opened


def test_labels_import_help_documents_the_exit_codes(db: Path) -> None:
    result = invoke(db, "labels", "import", "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "rows are never merged" in text
    assert "0 every row imported; 1 some row rejected; 2 the file cannot be imported" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["labels", "import", "missing.csv"], "missing.csv: no such file"),
        (["labels", "import", "."], ".: is a directory, not a label file"),
        (["models", "show", "nope"], "(run `finsent db upgrade` to create it)"),
        (["models", "promote", "nope", "--yes"], "no model version 'nope'"),
        (["models", "rollback", "--yes"], "no previous champion to roll back to"),
        (["models", "register", "nowhere"], "nowhere: no such model directory"),
    ],
)
def test_bad_arguments_are_one_line(db: Path, args: list[str], message: str) -> None:
    one_line_error(invoke(db, *args), 2, message)


def test_models_register_promote_rollback(
    db: Path, model_variant: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = model_variant(seed=11), model_variant(seed=12)
    v1, v2 = read_manifest(first).version, read_manifest(second).version
    assert invoke(db, "db", "upgrade").exit_code == 0
    result = invoke(db, "models", "list")
    assert result.exit_code == 0 and "no model versions" in result.stdout

    result = invoke(db, "models", "register", str(first), "--champion", "--by", "ops")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"registered {v1} from {first.resolve()}",
        f"{v1} is the champion",
        "no broker configured (FINSENT_KAFKA_BOOTSTRAP): workers pick it up by polling the registry",
    ]
    result = invoke(db, "models", "register", str(second), "--note", "hand-made")
    assert result.exit_code == 0 and f"registered {v2} (candidate)" in result.stdout, result.output

    result = invoke(db, "models", "list")
    assert result.exit_code == 0, result.output
    table = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}
    assert table == {v1: "champion", v2: "candidate"}

    monkeypatch.setattr("services.cli.common.stdin_is_interactive", lambda: True)
    result = invoke(db, "models", "promote", v2, input="n\n")
    one_line_error(result, 1, "not confirmed; nothing changed")
    assert f"Serve {v2} instead of {v1}?" in result.stdout
    result = invoke(
        db, "models", "promote", v2, "--by", "alice", "--reason", "better on recent news", input="y\n"
    )
    assert result.exit_code == 0, result.output
    assert f"{v2} is the champion (was {v1})" in result.stdout

    result = invoke(db, "models", "show", v2, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["status"] == "champion" and info["path"] == str(second.resolve())
    assert info["history"][-1].endswith("champion: promoted by alice: better on recent news")
    assert set(info["dev"]) == {"sentiment", "topic"}
    result = invoke(db, "models", "show", v1)
    assert result.exit_code == 0 and "status:            retired" in result.stdout, result.output
    assert "history:" in result.stdout and f"retired: {v2} promoted by alice" in result.stdout

    result = invoke(db, "models", "rollback", "--yes", "--by", "bob")
    assert result.exit_code == 0, result.output
    assert f"{v1} is the champion again; {v2} rejected" in result.stdout
    assert {r.version: r.status for r in stored(db, ModelVersionRow)} == {v1: "champion", v2: "rejected"}

    one_line_error(invoke(db, "models", "promote", v2, "--yes"), 2, f"version {v2} was rejected")
    result = invoke(db, "models", "promote", v2, "--yes", "--force")
    assert result.exit_code == 0 and f"{v2} is the champion" in result.stdout, result.output

    damaged = Path(shutil.copytree(first, tmp_path / "damaged"))
    (damaged / "model.safetensors").write_bytes(b"not weights")
    one_line_error(invoke(db, "models", "register", str(damaged)), 2, "does not match its manifest hash")


def test_errors_are_one_line_from_the_real_entry_point(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env["FINSENT_DATABASE_URL"] = f"sqlite:///{tmp_path}/finsent.db"
    result = subprocess.run(
        [sys.executable, "-m", "services", "models", "promote", "v-unknown", "--yes"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == "finsent: error: no model version 'v-unknown' (see `finsent models list`)\n"


def test_rollback_is_refused_when_the_champion_changed_after_the_question(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _registry_of_three(db)
    monkeypatch.setattr(registry, "_verify", lambda *args, **kwargs: None)  # no model files here
    now = datetime.now(UTC)

    def promote_v3_then_confirm(question: str, default: bool = False) -> bool:
        assert question == "Roll back from v2 to v1 (and mark v2 rejected)?"
        engine = make_engine(f"sqlite:///{db}")
        try:
            with Session(engine) as session, session.begin():
                registry.promote(session, "v3", by="retrainer", reason="gate passed", now=now)
        finally:
            engine.dispose()
        return True

    monkeypatch.setattr("services.cli.common.stdin_is_interactive", lambda: True)
    monkeypatch.setattr(typer, "confirm", promote_v3_then_confirm)
    result = invoke(db, "models", "rollback")
    one_line_error(result, 2, "the champion is now v3, not v2")
    assert result.stderr.count("\n") == 1
    assert {r.version: r.status for r in stored(db, ModelVersionRow)} == {
        "v1": "retired",
        "v2": "retired",
        "v3": "champion",
    }


def _registry_of_three(db: Path) -> None:
    """A migrated database whose registry holds v1 (retired), v2 (champion) and v3 (candidate),
    with no model files (tests patch `registry._verify`)."""
    assert invoke(db, "db", "upgrade").exit_code == 0
    now = datetime.now(UTC)
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session, session.begin():
            for version, status in (("v1", "retired"), ("v2", "champion"), ("v3", "candidate")):
                session.add(
                    ModelVersionRow(
                        version=version,
                        created_at=now,
                        metrics={},
                        path=f"/models/{version}",
                        sha256="a" * 64,
                        data_hash="d" * 64,
                        status=status,
                        status_changed_at=now,
                    )
                )
    finally:
        engine.dispose()


@pytest.mark.parametrize("args", [["models", "list"], ["models", "show", "v1"], ["models", "list", "--json"]])
def test_reading_a_database_that_is_not_there_creates_nothing(db: Path, args: list[str]) -> None:
    one_line_error(
        invoke(db, *args),
        2,
        f"database sqlite:///{db}: no database at {db} (run `finsent db upgrade` to create it)",
    )
    assert not db.parent.exists()


@pytest.mark.parametrize(
    ("args", "question"),
    [
        (["models", "promote", "v3"], "Serve v3 instead of v2: not confirmed"),
        (["models", "rollback"], "Roll back from v2 to v1 (and mark v2 rejected): not confirmed"),
    ],
)
def test_promote_and_rollback_without_a_terminal_need_yes(
    db: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], question: str
) -> None:
    _registry_of_three(db)
    monkeypatch.setattr(registry, "_verify", lambda *args, **kwargs: None)  # no model files here
    result = invoke(db, *args)  # CliRunner's stdin is no terminal
    one_line_error(result, 2, f"{question} (no terminal to ask on); pass --yes to confirm")
    assert "[y/N]" not in result.stdout  # refused without asking
    statuses = {r.version: r.status for r in stored(db, ModelVersionRow)}
    assert statuses == {"v1": "retired", "v2": "champion", "v3": "candidate"}
    result = invoke(db, *args, "--yes")
    assert result.exit_code == 0, result.output
    assert {r.version: r.status for r in stored(db, ModelVersionRow)}["v2"] != "champion"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["models", "list", "--limit", "10001"],
            "Invalid value for '--limit': Input should be less than or equal to 10000",
        ),
        (["models", "register"], "Missing argument 'DIR'."),
    ],
)
def test_usage_errors_are_one_line_from_the_real_entry_point(
    tmp_path: Path, args: list[str], message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env["FINSENT_DATABASE_URL"] = f"sqlite:///{tmp_path}/data/finsent.db"
    result = subprocess.run(
        [sys.executable, "-m", "services", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"finsent: error: {message}") and result.stderr.count("\n") == 1
    assert not (tmp_path / "data").exists()
