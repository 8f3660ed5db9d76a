"""`--database-url` / `--bootstrap-server`: one shared option each, winning over the
environment for the command, checked like the variable, restored afterwards."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from typer.testing import CliRunner

from services.broker import EmbeddedBroker
from services.cli import app
from services.settings import get_settings

CLEAN_ENV: dict[str, str | None] = {
    **{k: None for k in os.environ if k.startswith("FINSENT_")},
    "FINSENT_DATABASE_URL": None,
    "FINSENT_KAFKA_BOOTSTRAP": None,
}


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def invoke(*args: str, **env: str) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, **env})
    finally:
        get_settings.cache_clear()


def test_database_url_option_wins_over_the_environment_and_is_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env, from_option = tmp_path / "env.db", tmp_path / "option.db"
    monkeypatch.setenv("FINSENT_DATABASE_URL", f"sqlite:///{from_env}")
    get_settings.cache_clear()
    env = {k: v for k, v in CLEAN_ENV.items() if k != "FINSENT_DATABASE_URL"}  # CliRunner leaves it alone
    result = CliRunner().invoke(app, ["db", "upgrade", "--database-url", f"sqlite:///{from_option}"], env=env)
    assert result.exit_code == 0, result.output
    assert from_option.exists() and not from_env.exists()
    # restored when the command ended
    assert os.environ["FINSENT_DATABASE_URL"] == f"sqlite:///{from_env}"
    get_settings.cache_clear()
    assert get_settings().database.database_url == f"sqlite:///{from_env}"


def test_postgres_url_option(postgres_url: str, tmp_path: Path) -> None:
    result = invoke("db", "upgrade", "--database-url", postgres_url)
    assert result.exit_code == 0, result.output
    assert "upgraded from revision (empty)" in result.stdout
    assert "finsent_test_" in result.stdout


def test_bootstrap_server_option_reaches_the_broker(kafka_broker: EmbeddedBroker) -> None:
    result = invoke(
        "init", "--bootstrap-server", kafka_broker.bootstrap,
        FINSENT_KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}", FINSENT_TOPIC_NEWS_RAW="override-raw",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"topics ready on {kafka_broker.bootstrap}" in result.stdout
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        assert "override-raw" in admin.list_topics()
    finally:
        admin.close()
    assert "FINSENT_KAFKA_BOOTSTRAP" not in os.environ


def test_prune_database_url_option_wins_over_the_environment(tmp_path: Path) -> None:
    from_env, from_option = tmp_path / "env.db", tmp_path / "option.db"
    env_url, option_url = f"sqlite:///{from_env}", f"sqlite:///{from_option}"
    assert invoke("db", "upgrade", "--database-url", option_url).exit_code == 0
    result = invoke(
        "prune", "--older-than", "30", "--yes", "--database-url", option_url, FINSENT_DATABASE_URL=env_url
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"database {option_url}: no story published before ")
    assert not from_env.exists()
