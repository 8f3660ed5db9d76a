"""A clone with nothing beside it: the repository's files alone in an empty folder (no
../shared, no models, no database), `finsent run --demo --exit-when-done` from there with a
fresh FINSENT_HOME and no seed-data variables. The bootstrap model must train on the seed data
packaged in the clone's own bert_core/seed_data, and the demo must replay and score its
headlines (its calm history and its burst of bearish headlines).

Short by configuration, not by skipping anything: the tiny BERT of tests/conftest.py as the
base model (nothing is downloaded), a 0.2-minute, one-epoch bootstrap on the real packaged
data, and 30 demo headlines at 100/s.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from services.storage import count_items, count_predictions, make_engine

from .pipeline import run_env

pytestmark = pytest.mark.integration

DEMO_ITEMS = 30
RUN_TIMEOUT_S = 300


def test_a_clone_alone_trains_on_its_packaged_seed_data_and_scores_the_demo(
    source_tree: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    assert not (source_tree.parent / "shared").exists()
    assert sorted(p.name for p in source_tree.parent.iterdir()) == [source_tree.name]
    seed_dir = source_tree / "bert_core" / "seed_data"
    home = tmp_path / "home"
    env = run_env(
        home,
        FINSENT_BASE_MODEL=str(tiny_bert_dir),
        FINSENT_BOOTSTRAP_MINUTES="0.2",
        FINSENT_BOOTSTRAP_EPOCHS="1",
        # The tiny BERT labels real headlines at random, so whether the demo alert appears would
        # be chance; no detection reaches this floor, so the run ends the documented way for a
        # demo whose alert did not appear (tests/integration/test_run_command.py shows one that does).
        FINSENT_ALERT_MIN_BEARISH="1000",
    )
    # `python -m services` from the clone: its own services and bert_core come first on
    # sys.path (ahead of this checkout's editable install), and so do the child processes'.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services",
            "run",
            "--demo",
            "--demo-items",
            str(DEMO_ITEMS),
            "--demo-rate",
            "100",
            "--exit-when-done",
        ],
        cwd=source_tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-4000:]
    assert f"training one from the seed data in {seed_dir} " in output, output[-4000:]
    training = json.loads((home / "models" / "bootstrap" / "finsent.json").read_text())["training"]
    assert training["data_files"] == {
        "sentiment": str(seed_dir / "sentiment_train.csv"),
        "topic": str(seed_dir / "topic_train.csv"),
    }
    # The packaged data make the demo's story: calm news, then a burst of bearish headlines, about
    # Boeing when the model agrees they are bearish (this one labels at random: either may happen).
    assert re.search(
        r"^demo +replaying 30 real headlines .* a burst of 19 bearish ones about (\$BA|the market) ",
        proc.stdout,
        re.M,
    ), proc.stdout[-4000:]
    assert re.search(rf"^demo +{DEMO_ITEMS} items scored and stored", proc.stdout, re.M), output[-4000:]
    assert "finsent: error: the demo's alert did not appear" in proc.stderr, proc.stderr[-4000:]
    scored = [line for line in proc.stdout.splitlines() if re.match(r"^(bearish|bullish|neutral) ", line)]
    assert len(scored) == DEMO_ITEMS, proc.stdout[-4000:]
    engine = make_engine(f"sqlite:///{home / 'finsent.db'}")
    try:
        with Session(engine) as session:
            assert (count_items(session), count_predictions(session)) == (DEMO_ITEMS, DEMO_ITEMS)
    finally:
        engine.dispose()
    assert "Traceback" not in output, output[-4000:]
