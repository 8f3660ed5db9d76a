"""The generated reference documents: docs/settings.md, docs/news_raw.schema.json, the README's
command table. Each test fails when the committed file no longer matches the code, and says
which command regenerates it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.docs import generate
from services.docs.commands_table import END_MARKER, START_MARKER, render_commands_table
from services.docs.settings_page import REGENERATE_COMMAND, render_settings_page
from services.settings import FlatSettings

ROOT = generate.ROOT


@pytest.mark.parametrize("name", ["docs/settings.md", "docs/news_raw.schema.json", "README.md"])
def test_generated_file_is_up_to_date(name: str) -> None:
    path = ROOT / name
    render = generate.generated_files(ROOT)[path]
    current = path.read_text(encoding="utf-8")
    assert render(current) == current, f"{name} is out of date with the code; run: {REGENERATE_COMMAND}"


def test_every_setting_has_one_row_and_a_meaning() -> None:
    text = render_settings_page()
    for name, info in FlatSettings.model_fields.items():
        rows = [line for line in text.splitlines() if line.startswith(f"| `FINSENT_{name.upper()}` |")]
        assert len(rows) == 1, name
        assert info.description, f"Settings.{name} has no description for docs/settings.md"


def test_documented_defaults_do_not_depend_on_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_HOME", "/somewhere/else")
    monkeypatch.setenv("FINSENT_TORCH_THREADS", "7")
    text = render_settings_page()
    assert "| `FINSENT_DATABASE_URL` | `sqlite:///$FINSENT_HOME/finsent.db` |" in text
    assert "| `FINSENT_TORCH_THREADS` | the CPU count |" in text
    assert "/somewhere/else" not in text


def test_every_command_is_in_the_table() -> None:
    table = render_commands_table()
    for command in ("run", "ingest", "serve-http", "dashboard", "models promote", "dashboard users add"):
        assert f"| `finsent {command}` |" in table


def _copy_generated(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    for path in generate.generated_files(ROOT):
        shutil.copy(path, tmp_path / path.relative_to(ROOT))
    return tmp_path


def test_check_names_the_stale_file_and_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy_generated(tmp_path)
    settings_md = root / "docs" / "settings.md"
    settings_md.write_text(settings_md.read_text(encoding="utf-8").replace("`news.raw`", "`old.raw`"))
    readme = root / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace("| `finsent ingest` |", "| `finsent x` |"))
    assert generate.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "settings.md is out of date" in err and "README.md is out of date" in err
    assert "news_raw.schema.json" not in err
    assert REGENERATE_COMMAND in err
    assert generate.main(["--root", str(root)]) == 0
    assert generate.main(["--check", "--root", str(root)]) == 0


def test_readme_without_markers_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy_generated(tmp_path)
    readme = root / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace(START_MARKER, "").replace(END_MARKER, ""))
    assert generate.main(["--root", str(root)]) == 2
    assert "lacks the markers" in capsys.readouterr().err
