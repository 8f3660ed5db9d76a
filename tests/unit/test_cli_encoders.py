"""`finsent encoders list | install` and `finsent train --encoder NAME`, in a fresh FINSENT_HOME
(tests/conftest.py gives each test its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from bert_core import TrainConfig, load_model_dir
from bert_core.encoders import INSTALL_RECORD, MPNET_BASE, install
from services.cli import app
from services.settings import get_settings

from .encoder_parts import make_parts


def invoke(args: list[str]) -> Any:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, env={"FINSENT_TORCH_THREADS": "1"})
    finally:
        get_settings.cache_clear()


def test_list_shows_both_encoders_and_what_is_installed() -> None:
    result = invoke(["encoders", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {"minilm", "mpnet-base"}
    assert rows["minilm"]["default"] and rows["minilm"]["installed"]
    assert (rows["mpnet-base"]["layers"], rows["mpnet-base"]["hidden"]) == (12, 768)
    assert rows["mpnet-base"]["licence"] == "Apache-2.0"
    assert not rows["mpnet-base"]["installed"]  # this test's FINSENT_HOME has an empty store
    table = invoke(["encoders", "list"]).stdout
    assert "minilm (default)" in table and "12 x 768" in table and "109.5M" in table


def test_install_of_an_unknown_encoder_is_one_line() -> None:
    result = invoke(["encoders", "install", "bert-huge"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "finsent: error: unknown encoder 'bert-huge': choose one of minilm, mpnet-base "
        "(finsent encoders list)"
    )


def test_install_of_the_packaged_encoder_has_nothing_to_do() -> None:
    result = invoke(["encoders", "install", "minilm"])
    assert result.exit_code == 0, result.output
    assert "minilm ships inside its package, nothing to install" in result.stdout


def test_train_with_an_unknown_encoder_is_one_line(sentiment_csv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env["FINSENT_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services",
            "train",
            "--encoder",
            "no-such-encoder",
            "--sentiment-data",
            str(sentiment_csv),
            "--out",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "finsent: error: encoder 'no-such-encoder' is neither a known name (minilm, mpnet-base) nor an "
        "existing folder; see `finsent encoders list`"
    ]
    assert not (tmp_path / "m").exists()


def test_train_by_name_uses_the_store_and_the_encoder_s_learning_rate(
    tiny_mpnet_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    # A tiny MPNet installed where mpnet-base goes, its record carrying the real archive's
    # hash: it stands in for the 400 MB install, which `install` makes the same way.
    store = get_settings().encoders_dir
    parts = make_parts(tiny_mpnet_dir, tmp_path / "slices")
    folder = install(parts.spec, store, locate=parts.locate, progress=False).path
    record = json.loads((folder / INSTALL_RECORD).read_text())
    (folder / INSTALL_RECORD).write_text(json.dumps({**record, "archive_sha256": MPNET_BASE.archive_sha256}))
    out = tmp_path / "model"
    result = invoke(
        [
            "train",
            "--encoder",
            "mpnet-base",
            "--sentiment-data",
            str(sentiment_csv),
            "--topic-data",
            str(topic_csv),
            "--out",
            str(out),
            "--epochs",
            "1",
        ]
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    loaded = load_model_dir(out)
    assert loaded.config.base_model == str(folder)
    assert loaded.config.training["learning_rate"] == MPNET_BASE.learning_rate != TrainConfig.learning_rate
    again = invoke(["encoders", "install", "mpnet-base"])
    assert again.exit_code == 0 and "already installed" in again.stdout
