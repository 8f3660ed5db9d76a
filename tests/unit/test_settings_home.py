"""FINSENT_HOME: one folder holds the database, models, logs and holdout, whatever the working
directory; and the seed data defaults to the files packaged with finsent."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pydantic import ValidationError

from bert_core import packaged_seed_data
from services.cli.errors import settings_error_line
from services.settings import Settings


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake $HOME, with FINSENT_HOME unset: the documented default applies."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FINSENT_HOME", raising=False)
    monkeypatch.delenv("FINSENT_DATABASE_URL", raising=False)
    monkeypatch.delenv("FINSENT_DASHBOARD_USERS_FILE", raising=False)
    return home


def test_default_home_is_dot_finsent_in_the_users_home(user_home: Path) -> None:
    settings = Settings()
    home = user_home / ".finsent"
    assert settings.home == home
    assert settings.database.database_url == f"sqlite:///{home}/finsent.db"
    assert settings.models_dir == home / "models"
    assert settings.default_model_dir == home / "models" / "bootstrap"
    assert settings.registry_models_dir == home / "models" / "registry"
    assert settings.logs_dir == home / "logs"
    assert settings.holdout_dir == home / "holdout"
    assert settings.faust_dir == home / "faust"
    assert settings.dashboard.dashboard_users_file == home / "dashboard-users.toml"


def test_every_folder_is_the_same_from_any_working_directory(
    user_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    for folder in (tmp_path / "a", tmp_path / "b" / "deeper"):
        folder.mkdir(parents=True)
        monkeypatch.chdir(folder)
        s = Settings()
        seen.append(
            (
                s.home,
                s.database.database_url,
                s.default_model_dir,
                s.logs_dir,
                s.dashboard.dashboard_users_file,
            )
        )
    assert seen[0] == seen[1]
    assert seen[0][0].is_absolute()


def test_finsent_home_moves_everything_derived_from_it(
    user_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "state"))
    settings = Settings()
    assert settings.home == tmp_path / "state"
    assert settings.database.database_url == f"sqlite:///{tmp_path}/state/finsent.db"
    assert settings.default_model_dir == tmp_path / "state" / "models" / "bootstrap"
    assert settings.logs_dir == tmp_path / "state" / "logs"
    assert settings.dashboard.dashboard_users_file == tmp_path / "state" / "dashboard-users.toml"


def test_a_tilde_or_relative_home_is_made_absolute_once(
    user_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_HOME", "~/elsewhere")
    assert Settings().home == user_home / "elsewhere"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINSENT_HOME", "rel/state")
    settings = Settings()
    # Resolved against the working directory of the process that read it, so the child
    # processes `finsent run` passes it to agree with it wherever they start.
    assert settings.home == tmp_path / "rel" / "state"
    assert settings.database.database_url == f"sqlite:///{tmp_path}/rel/state/finsent.db"


def test_an_explicit_database_url_or_users_file_wins(
    user_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINSENT_DATABASE_URL", "postgresql+psycopg://finsent@127.0.0.1/finsent")
    monkeypatch.setenv("FINSENT_DASHBOARD_USERS_FILE", str(tmp_path / "users.toml"))
    settings = Settings()
    assert settings.database.database_url == "postgresql+psycopg://finsent@127.0.0.1/finsent"
    assert settings.dashboard.dashboard_users_file == tmp_path / "users.toml"
    assert settings.default_model_dir == user_home / ".finsent" / "models" / "bootstrap"


def test_a_blank_finsent_home_means_the_default(user_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_HOME", " ")
    assert Settings().home == user_home / ".finsent"


def test_a_home_that_cannot_be_expanded_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_HOME", "~no-such-user-finsent/state")
    with pytest.raises(ValidationError, match="set FINSENT_HOME to an absolute path") as caught:
        Settings()
    line = settings_error_line(caught.value)
    assert line == (
        "FINSENT_HOME='~no-such-user-finsent/state': could not determine home directory; set FINSENT_HOME "
        "to an absolute path"
    )  # not "directory.; set"


# --------------------------------------------------------------------------- seed data


def test_seed_data_defaults_to_the_packaged_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINSENT_SENTIMENT_DATA", raising=False)
    monkeypatch.delenv("FINSENT_TOPIC_DATA", raising=False)
    settings = Settings()
    packaged = packaged_seed_data()
    assert settings.training.sentiment_data == packaged["sentiment"]
    assert settings.training.topic_data == packaged["topic"]
    package_dir = Path(__file__).resolve().parents[2] / "bert_core" / "seed_data"
    assert settings.training.sentiment_data.parent.resolve() == package_dir
    assert "shared" not in settings.training.sentiment_data.parts


def test_seed_data_can_still_point_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_SENTIMENT_DATA", str(tmp_path / "mine.csv"))
    settings = Settings()
    assert settings.training.sentiment_data == tmp_path / "mine.csv"
    assert settings.training.topic_data == packaged_seed_data()["topic"]


def test_the_packaged_seed_files_are_the_labelled_sets_with_their_licence() -> None:
    paths = packaged_seed_data()
    expected_rows = {"sentiment": 9_543, "topic": 16_990}  # as the README beside them says
    label_counts = {"sentiment": 3, "topic": 20}
    for task, path in paths.items():
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == expected_rows[task]
        assert {int(row["label"]) for row in rows} == set(range(label_counts[task]))
        assert all(row["text"].strip() for row in rows)
    folder = paths["sentiment"].parent
    assert "MIT License" in (folder / "README.md").read_text(encoding="utf-8")
    assert "MIT License" in (folder / "LICENSE").read_text(encoding="utf-8")
