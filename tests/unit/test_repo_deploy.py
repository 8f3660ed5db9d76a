"""deploy/ stays in step with the code: its settings exist and parse, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from services.cli.app import app
from services.settings import FlatSettings, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "finsent.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def test_every_example_setting_is_a_real_setting_and_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = env_example()
    fields = {f"FINSENT_{name.upper()}" for name in FlatSettings.model_fields}
    assert set(pairs) <= fields, sorted(set(pairs) - fields)
    for name, value in pairs.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.kafka.kafka_bootstrap == pairs["FINSENT_KAFKA_BOOTSTRAP"]
    assert "password" not in pairs["FINSENT_DATABASE_URL"].lower().split("?")[0]


def test_units_run_existing_commands() -> None:
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for unit in (DEPLOY / "systemd").glob("*.service"):
        [command] = re.findall(r"/finsent (\w[\w-]*)", unit.read_text(encoding="utf-8"))
        assert command in commands, (unit.name, command)


def test_prometheus_config_scrapes_every_service_with_metrics() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"finsent-worker", "finsent-alerter", "finsent-dispatcher", "finsent-scheduler"}
    ports = {
        "finsent-alerter": FlatSettings.model_fields["alerter_metrics_port"].default,
        "finsent-dispatcher": FlatSettings.model_fields["dispatcher_metrics_port"].default,
        "finsent-scheduler": FlatSettings.model_fields["scheduler_metrics_port"].default,
    }
    for job, port in ports.items():
        assert jobs[job]["static_configs"][0]["targets"] == [f"finsent-host:{port}"]


@pytest.mark.parametrize("path", [".env", ".env.production", "deploy/.env", ".streamlit/secrets.toml"])
def test_secret_files_are_git_ignored(path: str) -> None:
    """Settings read FINSENT_* from `.env`, and Streamlit its secrets from `.streamlit/secrets.toml`:
    neither may ever be committed by a `git add -A`."""
    import shutil
    import subprocess

    git = shutil.which("git")
    root = Path(__file__).resolve().parents[2]
    if git is None or not (root / ".git").exists():
        pytest.fail("these tests run from a git checkout")
    result = subprocess.run([git, "check-ignore", "-q", "--no-index", path], cwd=root, check=False)
    assert result.returncode == 0, f"{path} is not ignored by .gitignore"


def test_probe_and_ingest_servers_bind_localhost_unless_told() -> None:
    hosts = [name for name in FlatSettings.model_fields if name.endswith("_metrics_host")] + [
        "ingest_http_host"
    ]
    assert len(hosts) == 5, hosts  # scorer, alerter, dispatcher, scheduler, serve-http
    for name in hosts:
        assert FlatSettings.model_fields[name].default == "127.0.0.1", name
    example = env_example()
    for name in hosts:
        assert example.get(f"FINSENT_{name.upper()}") in (None, "127.0.0.1"), name
