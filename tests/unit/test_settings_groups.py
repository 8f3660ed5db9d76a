"""Settings in groups: the variables stay FINSENT_<FIELD>, flat keywords still set one field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.cli.errors import settings_error_line
from services.settings import FIELD_GROUPS, GROUPS, HOME_DEFAULTS, FlatSettings, Settings, setting_value


def test_every_field_is_in_exactly_one_group_and_keeps_its_variable() -> None:
    names = [name for model in GROUPS.values() for name in model.model_fields]
    assert len(names) == len(set(names))  # one group per field: the variable maps to one place
    assert set(FlatSettings.model_fields) == {"home", *names}
    assert set(FIELD_GROUPS) == set(names)
    # A new setting goes into a group (its class in services/settings.py), not beside home.
    assert set(Settings.model_fields) == {"home", *GROUPS}


def test_environment_and_env_file_set_fields_inside_their_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("FINSENT_ALERT_WINDOW_BUCKETS=7\nFINSENT_SMTP_PORT=2525\n")
    monkeypatch.setenv("FINSENT_ALERT_P_HIGH", "0.001")
    monkeypatch.setenv("FINSENT_SMTP_PORT", "465")  # the environment beats .env
    monkeypatch.setenv("FINSENT_GATE_RECALL_FLOORS", '{"topic": {"IPO": 0.1}}')
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.alerts.alert_p_high == 0.001
    assert settings.alerts.alert_window_buckets == 7
    assert settings.delivery.smtp_port == 465
    assert settings.learning.gate_recall_floors == {"topic": {"IPO": 0.1}}


def test_a_flat_keyword_sets_one_field_and_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_ALERT_P_HIGH", "0.001")
    monkeypatch.setenv("FINSENT_ALERT_P_WARNING", "0.01")
    settings = Settings(_env_file=None, alert_p_high=1e-4)  # type: ignore[call-arg]
    assert settings.alerts.alert_p_high == 1e-4
    assert settings.alerts.alert_p_warning == 0.01  # the rest of the group still from the environment
    assert Settings.model_validate({"scorer_max_batch": 9}).scorer.scorer_max_batch == 9


def test_home_defaults_follow_home_and_count_as_unset(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    assert settings.database.database_url == f"sqlite:///{(tmp_path / 'finsent.db').as_posix()}"
    assert settings.ingest.ingest_tokens_file == tmp_path / "ingest-tokens.json"
    assert settings.dashboard.dashboard_users_file == tmp_path / "dashboard-users.toml"
    for field in HOME_DEFAULTS:
        assert field not in getattr(settings, FIELD_GROUPS[field]).model_fields_set
    given = Settings(_env_file=None, home=tmp_path, database_url="sqlite:///elsewhere.db")  # type: ignore[call-arg]
    assert "database_url" in given.database.model_fields_set
    assert setting_value(given, "database_url") == "sqlite:///elsewhere.db"


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({"alert_p_high": 5}, "FINSENT_ALERT_P_HIGH='5': input should be less than 1"),
        ({"scorer_metrics_port": "x"}, "FINSENT_SCORER_METRICS_PORT='x': input should be a valid integer"),
        ({"database_url": "mysql://db"}, "FINSENT_DATABASE_URL='mysql://db': unsupported database 'mysql'"),
    ],
)
def test_an_error_inside_a_group_names_the_variable(overrides: dict[str, object], line: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
    assert settings_error_line(caught.value).startswith(line)


def test_an_invalid_home_is_the_only_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, home=not_a_folder)  # type: ignore[call-arg]
    assert (
        settings_error_line(caught.value)
        == f"FINSENT_HOME='{not_a_folder}': {not_a_folder} exists and is not a directory"
    )
