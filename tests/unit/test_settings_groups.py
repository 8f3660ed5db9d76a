"""Settings in groups: the variables stay FINSENT_<FIELD>, flat keywords still set one field."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.cli.errors import settings_error_line
from services.schemas.news_raw import InvalidMessage, parse_raw_news
from services.settings import (
    FIELD_GROUPS,
    GROUPS,
    HOME_DEFAULTS,
    MAX_FUTURE_SKEW_SECONDS,
    FlatSettings,
    Settings,
    setting_value,
)


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
    monkeypatch.setenv("FINSENT_ALERT_P_WARNING", "0.01")  # at least p_high
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


@pytest.mark.parametrize("huge", ["1e13", "1e300", "inf", str(MAX_FUTURE_SKEW_SECONDS + 1)])
def test_a_future_skew_beyond_ten_years_is_one_settings_error(
    monkeypatch: pytest.MonkeyPatch, huge: str
) -> None:
    """Unbounded, it overflowed the future-date check of every message (receive time + skew past
    the year 9999, or past the largest timedelta), and the worker ended on each."""
    monkeypatch.setenv("FINSENT_MAX_FUTURE_SKEW_SECONDS", huge)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings_error_line(caught.value) == (
        f"FINSENT_MAX_FUTURE_SKEW_SECONDS='{huge}': "
        f"input should be less than or equal to {MAX_FUTURE_SKEW_SECONDS}"
    )


def test_the_largest_future_skew_still_checks_dates() -> None:
    settings = Settings(_env_file=None, max_future_skew_seconds=MAX_FUTURE_SKEW_SECONDS)  # type: ignore[call-arg]
    skew = timedelta(seconds=settings.scorer.max_future_skew_seconds)
    now = datetime.now(UTC)
    with pytest.raises(InvalidMessage) as caught:
        parse_raw_news(
            b'{"headline": "x", "published_at": "9999-12-31T23:59:59Z"}',
            received_at=now,
            watchlist={},
            max_future_skew=skew,
        )
    assert caught.value.error_type == "future_published_at"
    in_nine_years = (now + timedelta(days=9 * 365)).isoformat()
    payload = f'{{"headline": "x", "published_at": "{in_nine_years}"}}'.encode()
    kept = parse_raw_news(payload, received_at=now, watchlist={}, max_future_skew=skew)
    assert kept.published_at is not None and kept.published_at > now


# --------------------------------------------------------------------------- empty = unset


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("FINSENT_SCORER_WEB_PORT", "scorer_web_port"),
        ("FINSENT_UPGRADE_MAX_MINUTES", "upgrade_max_minutes"),
        ("FINSENT_ALERT_RENOTIFY_MINUTES", "alert_renotify_minutes"),
        ("FINSENT_MODEL", "model"),  # was Path(""), the working directory
        ("FINSENT_WATCHLIST", "watchlist"),
        ("FINSENT_DATABASE_SSLMODE", "database_sslmode"),
        ("FINSENT_RETRAIN_CRON", "retrain_cron"),
        ("FINSENT_SMTP_HOST", "smtp_host"),
    ],
)
def test_an_empty_optional_setting_is_unset(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str
) -> None:
    """docs/settings.md says "empty = off/none/never" of these: FINSENT_X= must mean that."""
    for value in ("", "  "):
        monkeypatch.setenv(variable, value)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert setting_value(settings, field) is None
    assert Settings(_env_file=None, **{field: ""}).model_dump()[FIELD_GROUPS[field]][field] is None  # type: ignore[arg-type]


def test_an_empty_required_setting_is_still_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_SCORER_MAX_BATCH", "")
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings_error_line(caught.value).startswith("FINSENT_SCORER_MAX_BATCH='': input should be")
    monkeypatch.delenv("FINSENT_SCORER_MAX_BATCH")
    monkeypatch.setenv("FINSENT_OUTBOUND_ALLOW", "")  # a string whose default is "" stays ""
    assert Settings(_env_file=None).runtime.outbound_allow == ""  # type: ignore[call-arg]


# --------------------------------------------------------------------------- checks across fields


def error_line(**overrides: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
    return settings_error_line(caught.value)


@pytest.mark.parametrize(
    "bootstrap",
    [
        "localhost:9092",
        "kafka-1.example.com:9093, kafka-2.example.com:9093",
        "10.0.0.7:19092",
        "[::1]:9092",
        "localhost",  # the Kafka clients take 9092
        "[::1]",
        "[fe80::1%eth0]:9092",
        "my_kafka:9092",
    ],
)
def test_good_bootstrap_servers(bootstrap: str) -> None:
    assert Settings(_env_file=None, kafka_bootstrap=bootstrap).kafka.kafka_bootstrap == bootstrap.strip()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("bootstrap", "problem"),
    [
        ("localhost:abc", "port 'abc' is not a number from 1 to 65535"),
        ("localhost:0", "port '0' is not a number from 1 to 65535"),
        ("localhost:65536", "port '65536' is not a number from 1 to 65535"),
        ("host:9092:extra", "'host:9092:extra' has more than one ':'"),
        ("::1", "'::1' has more than one ':'"),
        ("[::1:9092", "'[::1:9092' has no closing ']'"),
        ("[nothex]:9092", "[nothex] is not an IPv6 address"),
        ("kafka://h:9092", "'kafka://h:9092': give the server without a scheme"),
        ("bad host:9092", "'bad host' is not a host name or address"),
        ("a:1,,b:2", "an empty server between commas"),
        ("a:1,b:x", "'b:x': port 'x' is not a number from 1 to 65535"),
    ],
)
def test_bad_bootstrap_servers_are_one_line(bootstrap: str, problem: str) -> None:
    line = error_line(kafka_bootstrap=bootstrap)
    fix = "use host[:port][,host[:port]] (IPv6 in brackets: [::1]:9092)"
    assert line == f"FINSENT_KAFKA_BOOTSTRAP={bootstrap!r}: {problem}; {fix}"


def test_alert_thresholds_must_be_in_order() -> None:
    line = error_line(alert_p_warning=1e-5, alert_p_high=1e-3)
    assert line == (
        "need FINSENT_ALERT_P_WARNING >= FINSENT_ALERT_P_HIGH >= FINSENT_ALERT_P_CRITICAL (a smaller p-value "
        "is the more severe), got FINSENT_ALERT_P_WARNING=1e-05, FINSENT_ALERT_P_HIGH=0.001, "
        "FINSENT_ALERT_P_CRITICAL=1e-10"
    )
    assert "p_learn" not in line
    assert "FINSENT_ALERT_P_CRITICAL=1e-06" in error_line(alert_p_high=1e-7, alert_p_critical=1e-6)
    # Equal thresholds are allowed (DetectorConfig's own rule), and a looser warning moves p_learn.
    from services.alerting.config import alerter_config

    ok = Settings(_env_file=None, alert_p_warning=0.01, alert_p_high=0.01, alert_p_critical=0.01)  # type: ignore[call-arg]
    assert alerter_config(ok).detector.p_learn == 0.01


def test_the_baseline_half_life_must_cover_a_bucket() -> None:
    line = error_line(alert_bucket_seconds=86400, alert_baseline_half_life_hours=6)
    assert line == (
        "FINSENT_ALERT_BASELINE_HALF_LIFE_HOURS=6 is shorter than one bucket (FINSENT_ALERT_BUCKET_SECONDS="
        "86400): make it at least 24"
    )
    from services.alerting.config import alerter_config

    alerter_config(Settings(_env_file=None, alert_bucket_seconds=3600, alert_baseline_half_life_hours=1))  # type: ignore[call-arg]


def test_the_retrain_cron_is_checked_with_the_settings() -> None:
    assert Settings(_env_file=None, retrain_cron="0 2 * * mon-fri").learning.retrain_cron == "0 2 * * mon-fri"  # type: ignore[call-arg]
    assert error_line(retrain_cron="61 * * * *").startswith(
        "FINSENT_RETRAIN_CRON='61 * * * *': not a crontab expression (minute hour day month weekday, e.g. "
        "'0 2 * * *'): "
    )


@pytest.mark.parametrize(
    ("floors", "problem"),
    [
        ({"mood": {"IPO": 0.1}}, "unknown task 'mood': use 'topic' or 'sentiment'"),
        ({"topic": {"ipo": 0.1}}, "topic has no class 'ipo': did you mean 'IPO'?"),
        ({"topic": {"Energy/Oil": 0.1}}, "topic has no class 'Energy/Oil': did you mean 'Energy / Oil'?"),
        (
            {"sentiment": {"xyz": 0.1}},
            "sentiment has no class 'xyz': use one of 'bearish', 'bullish', 'neutral'",
        ),
        (
            {"sentiment": {"bearish": 1.5}},
            "the floor of sentiment 'bearish' is 1.5: a recall floor is 0 to 1",
        ),
        ({"topic": {"IPO": -0.1}}, "the floor of topic 'IPO' is -0.1: a recall floor is 0 to 1"),
    ],
)
def test_recall_floors_name_known_tasks_and_classes(
    floors: dict[str, dict[str, float]], problem: str
) -> None:
    assert error_line(gate_recall_floors=floors) == f"FINSENT_GATE_RECALL_FLOORS={str(floors)!r}: {problem}"


def test_good_recall_floors() -> None:
    floors = {"topic": {"IPO": 0.0, "Energy / Oil": 1.0}, "sentiment": {"bearish": 0.3}}
    assert Settings(_env_file=None, gate_recall_floors=floors).learning.gate_recall_floors == floors  # type: ignore[call-arg]


def test_a_complex_setting_that_is_not_json_gets_an_example_of_its_own_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic_settings import SettingsError

    monkeypatch.setenv("FINSENT_RETRAIN_LORA_TARGETS", "notjson")
    with pytest.raises(SettingsError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    line = settings_error_line(caught.value)
    assert line.startswith('FINSENT_RETRAIN_LORA_TARGETS is not valid JSON (e.g. ["query", "key", "value"')
    assert "JSON object" not in line


# --------------------------------------------------------------------------- where a bad value came from


@pytest.fixture
def env_file_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, holding the .env file `Settings()` reads; no FINSENT_* of the caller."""
    for name in [k for k in os.environ if k.startswith("FINSENT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_bad_value_from_the_env_file_names_the_file_unless_the_environment_set_it(
    env_file_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (env_file_dir / ".env").write_text("FINSENT_ALERT_P_HIGH=abc\nFINSENT_SCORER_MAX_BATCH=x\n")
    monkeypatch.setenv("FINSENT_SCORER_MAX_BATCH", "y")  # the environment beats the file
    with pytest.raises(ValidationError) as caught:
        Settings()
    parts = set(settings_error_line(caught.value).split("; "))
    assert parts == {
        "FINSENT_ALERT_P_HIGH='abc' (from ./.env): input should be a valid number, unable to parse string "
        "as a number (use a number)",
        "FINSENT_SCORER_MAX_BATCH='y': input should be a valid integer, unable to parse string as an "
        "integer (use a whole number)",
    }


def test_a_complex_setting_that_is_not_json_names_the_env_file_it_came_from(
    env_file_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic_settings import SettingsError

    (env_file_dir / ".env").write_text("FINSENT_RETRAIN_LORA_TARGETS=notjson\n")
    with pytest.raises(SettingsError) as caught:
        Settings()
    assert settings_error_line(caught.value).startswith(
        "FINSENT_RETRAIN_LORA_TARGETS (from ./.env) is not valid JSON (e.g. "
    )
    monkeypatch.setenv("FINSENT_RETRAIN_LORA_TARGETS", "alsonotjson")  # the environment's value is read
    with pytest.raises(SettingsError) as caught:
        Settings()
    assert settings_error_line(caught.value).startswith(
        "FINSENT_RETRAIN_LORA_TARGETS is not valid JSON (e.g. "
    )
