"""A LoRA retraining end to end (`finsent retrain --now --method lora`) on the tiny model, real
PostgreSQL and the embedded broker: the challenger goes through the same gate, is promoted as
a plain model directory, and the adapters alone are kept next to it, a fraction of its size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from safetensors import safe_open
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bert_core import WEIGHTS_FILE, Predictor, load_model_dir
from services.broker import EmbeddedBroker
from services.settings import get_settings
from services.storage import GateDecisionRow, ModelVersionRow, RetrainRunRow

from .model_support import register
from .pipeline import migrated_engine
from .test_retraining import champion_version, finsent, learning_env, write_labels

pytestmark = pytest.mark.integration


@pytest.fixture
def db_engine(fresh_postgres_url: str) -> Iterator[Engine]:
    with migrated_engine(fresh_postgres_url) as engine:
        yield engine


def test_a_lora_retraining_passes_the_gate_and_is_served_as_a_plain_model(
    kafka_broker: EmbeddedBroker,
    make_topic: Callable[..., str],
    db_engine: Engine,
    model_variant: Callable[..., Path],
    sentiment_csv: Path,
    topic_csv: Path,
    tmp_path: Path,
) -> None:
    # A champion that labels badly (its heads' outputs permuted): new labels must fix it.
    first = register(db_engine, model_variant(seed=43, shuffle_heads=True), champion=True)
    home = tmp_path / "home"
    env = learning_env(
        db_engine,
        home,
        sentiment_csv,
        topic_csv,
        FINSENT_KAFKA_BOOTSTRAP=kafka_broker.bootstrap,
        FINSENT_TOPIC_MODEL_EVENTS=make_topic("model.events"),
        FINSENT_RETRAIN_LORA_RANK="4",
        FINSENT_RETRAIN_LORA_LEARNING_RATE="0.003",
    )
    imported = finsent(
        env, "labels", "import", str(write_labels(tmp_path / "labels.csv")), "--labeller", "al"
    )
    assert imported.returncode == 0, imported.stderr
    result = finsent(env, "retrain", "--now", "--method", "lora")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "promoted" in result.stdout and "method: lora" in result.stdout

    new_champion = champion_version(db_engine)
    assert new_champion not in (None, first.version)
    with Session(db_engine) as session:
        run = session.scalars(select(RetrainRunRow)).one()
        decision = session.scalars(select(GateDecisionRow)).one()
        challenger = session.get_one(ModelVersionRow, new_champion)
    assert run.status == "promoted" and decision.accepted and decision.champion_version == first.version
    assert challenger.parent == first.version
    assert run.details["method"] == "lora"

    monkey_env = {k: v for k, v in env.items() if k.startswith("FINSENT_")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in monkey_env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        run_dir = get_settings().registry_models_dir / f"run-{run.id}"
    get_settings.cache_clear()
    model = load_model_dir(run_dir)  # strict: plain keys, hashes verified
    assert model.manifest.version == new_champion
    assert model.config.training["method"] == "lora" and model.config.training["lora"]["rank"] == 4
    assert not any("lora_" in key for key in model.model.state_dict())
    assert len(Predictor.load(run_dir, precision="fp32").predict(["stocks rally on earnings"])) == 1

    weights = (run_dir / WEIGHTS_FILE).stat().st_size
    adapter_file = run_dir.with_name(f"run-{run.id}.lora.safetensors")
    assert run.details["weights_bytes"] == weights
    assert run.details["adapter_bytes"] == adapter_file.stat().st_size < weights / 3
    with safe_open(str(adapter_file), framework="pt") as fh:
        assert fh.metadata()["base_version"] == first.version
