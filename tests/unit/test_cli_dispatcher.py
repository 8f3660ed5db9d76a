"""`finsent dispatcher --once` is a one-shot command: an unreachable database fails it at once
(one line, exit 2) instead of being waited for as the service waits for it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import services.cli.common as common
from services.cli import app
from services.settings import get_settings

CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FINSENT_")}


def test_once_does_not_wait_for_an_unreachable_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory
    real = common.guarded_database

    def never_sleeping(*args: Any, **kwargs: Any) -> Any:
        def sleep(seconds: float) -> None:
            raise AssertionError(f"--once waited {seconds:.1f} s for the database")

        return real(*args, **kwargs, sleep=sleep)

    monkeypatch.setattr(common, "guarded_database", never_sleeping)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app,
            ["dispatcher", "--once"],
            env={
                **CLEAN_ENV,
                "FINSENT_HOME": str(tmp_path / "home"),
                "FINSENT_DATABASE_URL": "postgresql://finsent@127.0.0.1:1/finsent",  # nothing listens
            },
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "retrying" not in result.stderr
    assert lines[0].startswith("finsent: error: database postgresql://finsent@127.0.0.1:1/finsent: ")
