"""`finsent doctor` against a good installation (the real embedded broker with the pipeline
topics, a migrated PostgreSQL database, a verified model, the seed files) and broken ones: a
stopped broker (a closed port), an unmigrated database, a missing or damaged model, a bad
setting. Exit 0 only when every check is OK, 1 otherwise; secrets never printed; nothing
created by looking."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from services.broker import EmbeddedBroker
from services.cli import app
from services.settings import get_settings
from services.storage import upgrade_database

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}
CHECKS = ["settings", "broker", "database", "model", "seed data", "files", "cpu", "disk"]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_password(url: str, password: str) -> str:
    # The local server trusts 127.0.0.1, so the password is ignored there: it only has to
    # stay out of the output.
    return make_url(url).set(password=password).render_as_string(hide_password=False)


@pytest.fixture
def good_env(
    kafka_broker: EmbeddedBroker,
    fresh_postgres_url: str,
    saved_model_dir: Path,
    sentiment_csv: Path,
    topic_csv: Path,
    tmp_path: Path,
) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "FINSENT_HOME": str(tmp_path / "home"),
        "FINSENT_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "FINSENT_DATABASE_URL": with_password(fresh_postgres_url, "s3cret-pw"),
        "FINSENT_MODEL": str(saved_model_dir),
        "FINSENT_SENTIMENT_DATA": str(sentiment_csv),
        "FINSENT_TOPIC_DATA": str(topic_csv),
        # The session broker is shared: this test's pipeline topics get their own names.
        **{
            f"FINSENT_TOPIC_{name.upper()}": f"{name}-{suffix}"
            for name in ("news_raw", "news_scored", "news_dlq", "model_events", "alerts")
        },
        "FINSENT_TOPIC_PARTITIONS": "1",
    }
    assert invoke(["init"], env).exit_code == 0
    upgrade_database(fresh_postgres_url)
    yield env


def invoke(args: list[str], env: dict[str, str]) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, env={**CLEAN_ENV, **env})
    finally:
        get_settings.cache_clear()


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    """(exit code, checks by name, the text output) of `finsent doctor` and `--json`."""
    text = invoke(["doctor", *args], env)
    as_json = invoke(["doctor", "--json", *args], env)
    assert text.exit_code == as_json.exit_code, text.output
    report = json.loads(as_json.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == CHECKS
    assert report["ok"] is (as_json.exit_code == 0)
    return as_json.exit_code, checks, text.stdout


def problems(checks: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name, c in checks.items() if not c["ok"]]


def test_good_setup_is_all_ok(good_env: dict[str, str]) -> None:
    code, checks, text = doctor(good_env)
    assert code == 0, text
    assert problems(checks) == []
    assert "reachable, 5 pipeline topics present" in checks["broker"]["detail"]
    assert "schema at the newest revision" in checks["database"]["detail"]
    assert "every file matches its hash" in checks["model"]["detail"]
    assert text.splitlines()[-1] == "all checks OK"
    assert all(line.startswith("OK ") for line in text.splitlines()[:-1])
    assert "s3cret-pw" not in text and "postgres:***@127.0.0.1" in checks["database"]["detail"]


def test_stopped_broker(good_env: dict[str, str]) -> None:
    code, checks, text = doctor({**good_env, "FINSENT_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}"})
    assert code == 1
    assert problems(checks) == ["broker"]
    assert "is not reachable" in checks["broker"]["detail"]
    assert "start the broker" in checks["broker"]["fix"]
    assert "PROBLEM  broker" in text and "fix: start the broker" in text
    assert text.splitlines()[-1] == "1 problem(s) found"


def test_bootstrap_server_option_overrides_a_stopped_broker(
    good_env: dict[str, str], kafka_broker: EmbeddedBroker
) -> None:
    env = {**good_env, "FINSENT_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}"}
    code, checks, _ = doctor(env, "--bootstrap-server", kafka_broker.bootstrap)
    assert code == 0 and problems(checks) == []


def test_missing_topics(good_env: dict[str, str]) -> None:
    code, checks, _ = doctor({**good_env, "FINSENT_TOPIC_ALERTS": f"never-created-{uuid.uuid4().hex}"})
    assert code == 1 and problems(checks) == ["broker"]
    assert "do not exist" in checks["broker"]["detail"] and "finsent init" in checks["broker"]["fix"]


def test_unmigrated_database(good_env: dict[str, str], postgres_url: str) -> None:
    # postgres_url: another fresh database of this module, never migrated
    code, checks, _ = doctor({**good_env, "FINSENT_DATABASE_URL": postgres_url})
    assert code == 1 and problems(checks) == ["database"]
    assert "has no schema" in checks["database"]["detail"]
    assert checks["database"]["fix"].startswith("run `finsent db upgrade`")


def test_unreachable_database(good_env: dict[str, str]) -> None:
    url = f"postgresql://finsent:s3cret-pw@127.0.0.1:{closed_port()}/finsent"
    code, checks, text = doctor({**good_env, "FINSENT_DATABASE_URL": url})
    assert code == 1 and problems(checks) == ["database"]
    assert "is not reachable" in checks["database"]["detail"]
    assert "s3cret-pw" not in text


def test_sqlite_without_a_database_file_creates_nothing(good_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "finsent.db"
    code, checks, _ = doctor({**good_env, "FINSENT_DATABASE_URL": f"sqlite:///{missing}"})
    assert code == 1 and problems(checks) == ["database"]
    assert "no database file yet" in checks["database"]["detail"]
    assert not missing.parent.exists()


def test_missing_model(good_env: dict[str, str], tmp_path: Path) -> None:
    code, checks, _ = doctor({**good_env, "FINSENT_MODEL": str(tmp_path / "no-model")})
    assert code == 1 and problems(checks) == ["model"]
    assert "does not exist" in checks["model"]["detail"]


def test_damaged_model(good_env: dict[str, str], saved_model_dir: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(saved_model_dir, damaged)
    with (damaged / "finsent.json").open("a", encoding="utf-8") as file:
        file.write(" ")
    code, checks, _ = doctor({**good_env, "FINSENT_MODEL": str(damaged)})
    assert code == 1 and problems(checks) == ["model"]
    assert "does not match its manifest hash" in checks["model"]["detail"]


def test_missing_seed_data(good_env: dict[str, str], tmp_path: Path) -> None:
    code, checks, _ = doctor({**good_env, "FINSENT_TOPIC_DATA": str(tmp_path / "none.csv")})
    assert code == 1 and problems(checks) == ["seed data"]
    assert "FINSENT_TOPIC_DATA" in checks["seed data"]["detail"]


def test_bad_setting_is_reported_by_the_real_entry_point(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    result = subprocess.run(
        [sys.executable, "-m", "services", "doctor"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "FINSENT_HOME": str(tmp_path / "home"), "FINSENT_PRECISION": "fp64"},
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "PROBLEM  settings   FINSENT_PRECISION='fp64': input should be" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "home").exists()


def test_model_is_the_registry_champion_without_finsent_model(
    good_env: dict[str, str], saved_model_dir: Path
) -> None:
    env = {k: v for k, v in good_env.items() if k != "FINSENT_MODEL"}
    code, checks, _ = doctor(env)
    assert code == 1 and problems(checks) == ["model"]  # no champion, no bootstrap model yet
    assert "(the bootstrap model) does not exist" in checks["model"]["detail"]
    assert invoke(["models", "register", str(saved_model_dir), "--champion"], env).exit_code == 0
    code, checks, _ = doctor(env)
    assert code == 0, checks
    assert f"{saved_model_dir.resolve()} (the registry's champion)" in checks["model"]["detail"]
