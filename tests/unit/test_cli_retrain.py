"""`finsent scheduler`: an address its probes cannot listen on is one line that names both
settings that could be wrong (the host and the port), before anything else starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.settings import get_settings

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


def test_an_address_not_of_this_machine_names_the_host_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory
    db = tmp_path / "finsent.db"
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app,
            ["scheduler"],
            env={
                **CLEAN_ENV,
                "FINSENT_HOME": str(tmp_path / "home"),
                "FINSENT_DATABASE_URL": f"sqlite:///{db}",
                "FINSENT_SCHEDULER_METRICS_HOST": "192.0.2.1",  # TEST-NET-1: not this machine's
                "FINSENT_SCHEDULER_METRICS_PORT": "0",
            },
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("finsent: error: cannot serve metrics on 192.0.2.1:0: ")
    assert lines[0].endswith(
        "; set FINSENT_SCHEDULER_METRICS_PORT to a free port (0 picks one) or "
        "FINSENT_SCHEDULER_METRICS_HOST to an address of this machine"
    )
    assert not db.exists()  # before the database is touched
