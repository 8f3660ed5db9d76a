"""`finsent run --demo --exit-when-done` on a fresh home, as a user runs it: no broker or
database configured (so the embedded broker and SQLite), no model (so it bootstraps one from
the seed data, here the tiny BERT and the small CSVs), then the demo feed through the real
scorer worker into SQLite, with the alerter and the dispatcher running beside it. A second
run reuses the model and stores nothing twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.broker.embedded import free_port
from services.storage import ModelVersionRow, count_items, count_predictions, make_engine

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_ITEMS = 40
RUN_TIMEOUT_S = 300


def run_finsent(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def sqlite_counts(db: Path) -> tuple[int, int]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            return count_items(session), count_predictions(session)
    finally:
        engine.dispose()


def registry_statuses(db: Path) -> dict[str, str]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            return dict(
                session.execute(select(ModelVersionRow.version, ModelVersionRow.status)).tuples().all()
            )
    finally:
        engine.dispose()


def test_run_demo_bootstraps_a_model_and_scores_the_feed_into_sqlite(
    tiny_bert_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env |= {
        "FINSENT_HOME": str(home),
        "FINSENT_BASE_MODEL": str(tiny_bert_dir),
        "FINSENT_SENTIMENT_DATA": str(sentiment_csv),
        "FINSENT_TOPIC_DATA": str(topic_csv),
        "FINSENT_BOOTSTRAP_MINUTES": "0.5",
        "FINSENT_BOOTSTRAP_EPOCHS": "1",
        "FINSENT_TORCH_THREADS": "1",
        "FINSENT_PRECISION": "fp32",
        "FINSENT_SCORER_SESSION_TIMEOUT_SECONDS": "6",
        "FINSENT_SCORER_METRICS_PORT": str(free_port()),
        "FINSENT_ALERTER_METRICS_PORT": str(free_port()),
        "FINSENT_DISPATCHER_METRICS_PORT": str(free_port()),
        "FINSENT_SCHEDULER_METRICS_PORT": str(free_port()),
        "FINSENT_ALERTER_SESSION_TIMEOUT_SECONDS": "6",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    args = ("run", "--demo", "--demo-items", str(DEMO_ITEMS), "--demo-rate", "100", "--exit-when-done")

    first = run_finsent(env, *args)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    assert "training one from the seed data" in output
    assert (home / "models" / "bootstrap" / "manifest.json").is_file()
    assert f"demo done: {DEMO_ITEMS} items scored and stored" in output, output[-4000:]
    scored_lines = [
        line for line in first.stdout.splitlines() if re.match(r"^(bearish|bullish|neutral) ", line)
    ]
    assert len(scored_lines) == DEMO_ITEMS, first.stdout[-4000:]
    assert sqlite_counts(home / "finsent.db") == (DEMO_ITEMS, DEMO_ITEMS)
    assert "embedded broker at 127.0.0.1:" in output
    assert "(first item scored" in output
    start_lines = {
        "worker": None,
        "alerter": "alerting on news.scored",
        "dispatcher": "dispatching alert",
        "scheduler": "retraining scheduler on",
    }
    for name, start_line in start_lines.items():
        log = home / "logs" / f"{name}.log"
        assert re.search(rf"^{name} +pid \d+, log {re.escape(str(log))}; metrics http://", first.stdout, re.M)
        text = log.read_text(encoding="utf-8")  # exists: the service logged there
        assert start_line is None or start_line in text, f"{log}:\n{text[-4000:]}"
    assert env["FINSENT_ALERTER_METRICS_PORT"] in first.stdout
    assert env["FINSENT_DISPATCHER_METRICS_PORT"] in first.stdout
    assert "exited with code" not in output and "Traceback" not in output, output[-4000:]
    # The bootstrap model was adopted as the registry's champion, and the worker served it.
    version = json.loads((home / "models" / "bootstrap" / "manifest.json").read_text())["version"]
    assert registry_statuses(home / "finsent.db") == {version: "champion"}
    assert f"with model {version}" in (home / "logs" / "worker.log").read_text(encoding="utf-8")

    second = run_finsent(env, *args)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-4000:]
    assert "training one from the seed data" not in output  # the bootstrap model is reused
    assert registry_statuses(home / "finsent.db") == {version: "champion"}
    assert sqlite_counts(home / "finsent.db") == (DEMO_ITEMS, DEMO_ITEMS)  # same stories, stored once
