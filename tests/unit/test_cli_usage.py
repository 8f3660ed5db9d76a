"""`finsent --version`, and every bad setting or argument as one line with exit code 2.

These run the real entry point (`python -m services`) in a subprocess: `main()` is what
turns a bad FINSENT_* value or a click usage error into one line on stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from services.cli.errors import mask_url, settings_error_line, shown_value
from services.settings import Settings


def finsent(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, "FINSENT_HOME": str(cwd / "home"), **env},
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("finsent: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    result = finsent(["--version"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"finsent {version('finsent')}"


def test_version_works_even_with_a_bad_setting(tmp_path: Path) -> None:
    result = finsent(["--version"], tmp_path, FINSENT_PRECISION="fp64")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "FINSENT_PRECISION",
            "fp64",
            "FINSENT_PRECISION='fp64': input should be 'auto', 'fp32', 'bf16' or 'int8'",
        ),
        ("FINSENT_COMPILE", "maybe", "FINSENT_COMPILE='maybe'"),
        (
            "FINSENT_TOPIC_PARTITIONS",
            "0",
            "FINSENT_TOPIC_PARTITIONS='0': input should be greater than or equal to 1",
        ),
        ("FINSENT_SCORER_MAX_BATCH", "many", "(use a whole number)"),
        ("FINSENT_LOG_LEVEL", "LOUD", "FINSENT_LOG_LEVEL='LOUD': input should be 'DEBUG', 'INFO',"),
        ("FINSENT_GATE_RECALL_FLOORS", "{bad", "FINSENT_GATE_RECALL_FLOORS is not valid JSON"),
        (
            "FINSENT_GATE_RECALL_FLOORS",
            '{"mood": {"IPO": 0.1}}',
            "FINSENT_GATE_RECALL_FLOORS=\"{'mood': {'IPO': 0.1}}\": unknown task 'mood': use 'topic' or "
            "'sentiment'",
        ),
        (
            "FINSENT_GATE_RECALL_FLOORS",
            '{"topic": {"ipo": 0.1}}',
            "topic has no class 'ipo': did you mean 'IPO'?",
        ),
        (
            "FINSENT_GATE_RECALL_FLOORS",
            '{"sentiment": {"bearish": 2}}',
            "the floor of sentiment 'bearish' is 2: a recall floor is 0 to 1",
        ),
        # The setting is a list: the example is one (not "a JSON object").
        (
            "FINSENT_RETRAIN_LORA_TARGETS",
            "notjson",
            'FINSENT_RETRAIN_LORA_TARGETS is not valid JSON (e.g. ["query", "key", "value",',
        ),
        (
            "FINSENT_DATABASE_URL",
            "postgresql://bob:hunter2@db:notaport/finsent",
            "FINSENT_DATABASE_URL='postgresql://bob:****@db:notaport/finsent': port 'notaport' is not a "
            "number (expected e.g. postgresql+psycopg://user:password@host:5432/db)",
        ),
        (
            "FINSENT_DATABASE_URL",
            "garbage",
            "FINSENT_DATABASE_URL='garbage': not a URL (expected e.g. postgresql+psycopg://user@host/db or "
            "sqlite:///path",
        ),
        (
            "FINSENT_KAFKA_BOOTSTRAP",
            "localhost:abc",
            "FINSENT_KAFKA_BOOTSTRAP='localhost:abc': port 'abc' is not a number from 1 to 65535; use "
            "host[:port][,host[:port]] (IPv6 in brackets: [::1]:9092)",
        ),
        (
            "FINSENT_ALERT_P_HIGH",
            "0.5",
            "need FINSENT_ALERT_P_WARNING >= FINSENT_ALERT_P_HIGH >= FINSENT_ALERT_P_CRITICAL (a smaller "
            "p-value is the more severe), got FINSENT_ALERT_P_WARNING=1e-05, FINSENT_ALERT_P_HIGH=0.5, "
            "FINSENT_ALERT_P_CRITICAL=1e-10",
        ),
        (
            "FINSENT_RETRAIN_CRON",
            "bad cron",
            "FINSENT_RETRAIN_CRON='bad cron': not a crontab expression (minute hour day month weekday, "
            "e.g. '0 2 * * *'): Wrong number of fields",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    line = one_line_error(finsent(["db", "current"], tmp_path, **{variable: value}))
    assert expected in line
    assert not (tmp_path / "home").exists()  # nothing was created


def test_a_file_as_home_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    line = one_line_error(finsent(["labels", "stats"], tmp_path, FINSENT_HOME=str(tmp_path / "afile")))
    assert "FINSENT_HOME=" in line and "exists and is not a directory" in line


def test_a_sqlite_path_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    url = f"sqlite:///{tmp_path}/afile/finsent.db"
    line = one_line_error(finsent(["labels", "stats"], tmp_path, FINSENT_DATABASE_URL=url))
    assert line.startswith(f"finsent: error: database {url}: ")


def test_log_level_in_any_case() -> None:
    assert Settings(log_level="debug").runtime.log_level == "DEBUG"  # type: ignore[arg-type]


def test_an_unsupported_database_url_is_one_line_with_the_password_hidden(tmp_path: Path) -> None:
    result = finsent(["labels", "stats"], tmp_path, FINSENT_DATABASE_URL="mysql://bob:hunter2@db/finsent")
    line = one_line_error(result)
    assert "FINSENT_DATABASE_URL='mysql://bob:****@db/finsent'" in line
    assert "unsupported database 'mysql'" in line and "postgresql://" in line and "sqlite:///" in line
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nosuch"], "No such command 'nosuch'. (see `finsent --help`)"),
        (["labels", "list", "--limit", "0"], "Invalid value for '--limit'"),
        (["subscriptions", "remove"], "Missing argument 'name'"),
        (["train", "--out", "m", "--pooling", "max"], "'max' is not one of 'cls', 'mean'"),
        (["train", "--out", "m", "--precision", "fp16"], "'fp16' is not one of 'auto', 'fp32', 'bf16'"),
        (
            ["subscriptions", "add", "--name", "x", "--channel", "pigeon"],
            "'pigeon' is not one of 'webhook', 'slack', 'email', 'log'",
        ),
        (
            ["subscriptions", "add", "--name", "x", "--channel", "log", "--min-severity", "urgent"],
            "'urgent' is not one of 'warning', 'high', 'critical'",
        ),
        (["dashboard", "users", "add", "bob", "--role", "root"], "'root' is not one of 'viewer'"),
        (
            ["labels", "stats", "--database-url", "mysql://bob:hunter2@db/x"],
            "Invalid value for '--database-url': unsupported database 'mysql'",
        ),
        (
            ["prune", "--older-than", "30", "--database-url", "mysql://bob:hunter2@db/x"],
            "Invalid value for '--database-url': unsupported database 'mysql'",
        ),
        (["dashboard", "--port", "70000"], "Invalid value for '--port'"),
        (["labels", "list", "--task", "mood"], "'mood' is not one of 'topic', 'sentiment'"),
        (
            ["models", "list", "--status", "gold"],
            "is not one of 'candidate', 'champion', 'retired', 'rejected'",
        ),
        (
            ["db", "current", "--database-url", "postgresql://u@h:notaport/db"],
            "Invalid value for '--database-url': port 'notaport' is not a number",
        ),
        (
            ["init", "--bootstrap-server", "localhost:abc"],
            "Invalid value for '--bootstrap-server': port 'abc' is not a number from 1 to 65535",
        ),
        (
            ["init", "--bootstrap-server", "host:9092:extra"],
            "Invalid value for '--bootstrap-server': 'host:9092:extra' has more than one ':'",
        ),
        (["topics", "list", "--bootstrap-server", "[::1:9092"], "'[::1:9092' has no closing ']'"),
        (
            ["prune", "--older-than", "1e9"],
            "Invalid value for '--older-than': Input should be less than or equal to 36500",
        ),
        (["prune", "--older-than", "800000"], "Invalid value for '--older-than'"),
        (["prune", "--older-than", "inf"], "Invalid value for '--older-than'"),
        (
            ["alerts", "list", "--since", "800000d"],
            "Invalid value for '--since': '800000d' reaches back before the year 1: give a shorter duration",
        ),
        (
            ["alerts", "show", "99999999999999999999"],
            "Invalid value for 'ID': Input should be less than or equal to",
        ),
        (["alerts", "ack", "99999999999999999999"], "Invalid value for 'ID'"),
        (["alerts", "resolve", "99999999999999999999"], "Invalid value for 'ID'"),
        (["alerts", "show", "0"], "Invalid value for 'ID': Input should be greater than or equal to 1"),
        (["labels", "list", "--limit", "99999999999999999999"], "Invalid value for '--limit'"),
        (["labels", "disagreements", "--limit", "10001"], "Invalid value for '--limit'"),
        (["ingest", "."], "finsent: error: .: is a directory, not a file"),
        (["train", "--sentiment-data", ".", "--out", "m"], "finsent: error: .: is a directory, not a file"),
        # click raises "requires an argument" without its context: the hint is found from argv.
        (
            ["db", "current", "--database-url"],
            "Option '--database-url' requires an argument. (see `finsent db current --help`)",
        ),
    ],
)
def test_a_bad_argument_is_one_line_with_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    line = one_line_error(finsent(args, tmp_path))
    assert expected in line
    assert "Value error" not in line
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("command", [["retrain", "--now"], ["scheduler"], ["upgrade-model"]])
def test_the_commands_that_announce_promotions_take_bootstrap_server(
    tmp_path: Path, command: list[str]
) -> None:
    """They publish on model.events, so `--bootstrap-server` stands for FINSENT_KAFKA_BOOTSTRAP
    and is checked like it: blank (the embedded broker) cannot speak TLS."""
    result = finsent(
        [*command, "--bootstrap-server", ""],
        tmp_path,
        FINSENT_KAFKA_SECURITY_PROTOCOL="SSL",
        FINSENT_KAFKA_BOOTSTRAP="kafka.example:9093",  # valid: the option is what breaks it
    )
    line = one_line_error(result)
    assert "Invalid value for '--bootstrap-server': FINSENT_KAFKA_SECURITY_PROTOCOL=SSL needs" in line
    assert not (tmp_path / "home").exists()


def test_help_lists_the_choices(tmp_path: Path) -> None:
    result = finsent(["subscriptions", "add", "--help"], tmp_path, COLUMNS="200")
    assert result.returncode == 0
    assert "warning|high|critical" in result.stdout
    assert "webhook|slack|email|log" in result.stdout


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+pg8000://u@h/db", "unsupported database 'postgresql+pg8000'"),
        ("sqlite+aiosqlite:///x.db", "unsupported database 'sqlite+aiosqlite'"),
        ("x.db", "not a URL (expected e.g. postgresql+psycopg://user@host/db or sqlite:///path"),
        ("postgresql://u@h:notaport/db", "port 'notaport' is not a number"),
        ("postgresql://u@h:/db", "no port after the ':'"),
        ("postgresql://u@h:70000/db", "port 70000 is not from 1 to 65535"),
        ("postgresql://u@[::1]:x/db", "port 'x' is not a number"),
    ],
)
def test_only_the_installed_drivers_and_parsable_urls_are_accepted(url: str, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(database_url=url)
    for good in (
        "postgresql://u@h/db",
        "postgresql+psycopg://u@h/db",
        "postgresql://u:pass:word@h:5432/db",
        "postgresql://u@[::1]:5432/db",
        "postgresql://u@/db?host=/var/run/postgresql",
        "sqlite:///x.db",
        "sqlite:///C:/data/x.db",
        "sqlite://",
    ):
        assert Settings(database_url=good).database.database_url == good


def test_doctor_reports_a_bad_bootstrap_server_among_its_checks(tmp_path: Path) -> None:
    result = finsent(["doctor"], tmp_path, FINSENT_KAFKA_BOOTSTRAP="localhost:abc")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "FINSENT_KAFKA_BOOTSTRAP='localhost:abc': port 'abc' is not a number" in result.stdout


def test_an_option_without_its_value_names_the_command_to_ask() -> None:
    from services.cli.app import command_path

    assert command_path(["db", "current", "--database-url"]) == "finsent db current"
    assert command_path(["--database-url"]) == "finsent"
    assert command_path(["labels", "nosuch", "list"]) == "finsent labels"


def test_settings_error_line_for_several_fields() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        Settings(precision="fp64", database_url="oracle://u:secret@h/db")  # type: ignore[arg-type]
    line = settings_error_line(caught.value)
    assert "FINSENT_PRECISION='fp64'" in line
    assert "FINSENT_DATABASE_URL='oracle://u:****@h/db'" in line
    assert "secret" not in line
    assert "\n" not in line


def test_masking() -> None:
    assert mask_url("postgresql://bob:pw@host:5432/db") == "postgresql://bob:****@host:5432/db"
    assert mask_url("https://hooks.example/T0?x=1") == "https://hooks.example/T0?x=1"
    assert mask_url("https://token@hooks.example/x") == "https://****@hooks.example/x"
    assert (
        mask_url("https://h.example/x?a=1&api_key=abc&token=t")
        == "https://h.example/x?a=1&api_key=****&token=****"
    )
    assert shown_value("smtp_password", "pw") == "****"
    assert shown_value("smtp_password_file", "/run/secrets/smtp") == "/run/secrets/smtp"
    assert shown_value("database_url", "sqlite:///x.db") == "sqlite:///x.db"
    assert shown_value("database_url", "postgresql://bob@h/db") == "postgresql://bob@h/db"
    assert shown_value("database_url", "postgresql://bob:pw@h/db") == "postgresql://bob:****@h/db"


def test_parse_since() -> None:
    from datetime import UTC, datetime, timedelta

    from services.cli.alerts import parse_since

    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now=now) == now - timedelta(minutes=30)
    assert parse_since("1.5h", now=now) == now - timedelta(minutes=90)
    assert parse_since("2d", now=now) == now - timedelta(days=2)
    assert parse_since("2026-03-01T09:00", now=now) == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert parse_since("2026-03-01T09:00+01:00", now=now) == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday", now=now)
    for too_far in ("800000d", "99999999999999999999w"):
        with pytest.raises(ValueError, match="reaches back before the year 1"):
            parse_since(too_far, now=now)


def test_bad_since_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(finsent(["alerts", "list", "--since", "3x"], tmp_path))
    assert "Invalid value for '--since': '3x' is neither a duration" in line
    assert not (tmp_path / "home").exists()


def test_shell_completion_offers_the_choices(tmp_path: Path) -> None:
    words = "finsent alerts list --status "
    result = finsent(
        [],
        tmp_path,
        _FINSENT_COMPLETE="complete_bash",
        _TYPER_COMPLETE_ARGS=words,
        COMP_WORDS=words,
        COMP_CWORD="4",
        FINSENT_PRECISION="bad",  # completion must work even with a bad setting
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "open",
        "attention",
        "acknowledged",
        "closed",
        "resolved",
        "superseded",
        "all",
    ]


def test_help_works_with_a_bad_setting(tmp_path: Path) -> None:
    result = finsent(["alerts", "list", "--help"], tmp_path, FINSENT_PRECISION="bad", COLUMNS="200")
    assert result.returncode == 0, result.stderr
    assert "open|attention|acknowledged|closed|resolved|superseded|all" in result.stdout
