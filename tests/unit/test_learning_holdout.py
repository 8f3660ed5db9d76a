"""The frozen holdout (frozen once from the seed files' dev split, hash-verified, never
re-split) and evaluating a model on holdouts with the tiny saved model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bert_core import LabelledData, Predictor, evaluate_sets, load_model_dir
from bert_core.recipes import load_task_files, split_sets
from services.learning.gate import HoldoutReport
from services.learning.holdout import (
    HoldoutError,
    evaluate_model,
    evaluate_on_holdouts,
    exclude_holdout,
    frozen_holdouts,
    holdout_dir,
    metrics_from_report,
)
from services.settings import Settings
from tests.tiny_model import make_sentiment_rows, make_topic_rows, write_csv


def settings_for(home: Path, **overrides: object) -> Settings:
    return Settings(_env_file=None, home=home, **overrides)  # type: ignore[call-arg]


@pytest.fixture
def seeded(tmp_path: Path) -> Settings:
    seeds = tmp_path / "seed"
    seeds.mkdir()
    return settings_for(
        tmp_path / "home",
        sentiment_data=write_csv(seeds / "sentiment.csv", make_sentiment_rows(n_per_class=20)),
        topic_data=write_csv(seeds / "topic.csv", make_topic_rows(n_per_class=10)),
        seed=7,
        dev_fraction=0.1,
    )


def test_frozen_once_as_the_dev_split_training_never_sees(seeded: Settings) -> None:
    holdouts = frozen_holdouts(seeded)
    expected = split_sets(
        load_task_files({"sentiment": seeded.training.sentiment_data, "topic": seeded.training.topic_data}),
        dev_fraction=0.1,
        seed=7,
    ).dev
    for task in ("sentiment", "topic"):
        frozen = holdouts[task]
        assert frozen.data == expected[task]
        assert frozen.path == holdout_dir(seeded) / f"{task}.jsonl"
        manifest = json.loads((holdout_dir(seeded) / f"{task}.manifest.json").read_text())
        assert manifest["sha256"] == frozen.sha256 and manifest["n"] == len(frozen.data)
        assert (manifest["seed"], manifest["dev_fraction"]) == (7, 0.1)
    assert len(holdouts["sentiment"].data) == 6 and len(holdouts["topic"].data) == 20  # 10 % of each class
    first = json.loads(holdouts["sentiment"].path.read_text().splitlines()[0])
    assert set(first) == {"text", "label"} and first["label"] in ("bearish", "bullish", "neutral")


def test_a_changed_seed_file_or_seed_does_not_change_the_frozen_holdout(seeded: Settings) -> None:
    before = frozen_holdouts(seeded)
    content = {t: h.path.read_bytes() for t, h in before.items()}
    write_csv(seeded.training.sentiment_data, make_sentiment_rows(n_per_class=25, seed=99))
    later = settings_for(
        seeded.home,
        sentiment_data=seeded.training.sentiment_data,
        topic_data=seeded.training.topic_data,
        seed=8,
    )
    after = frozen_holdouts(later)
    for task in ("sentiment", "topic"):
        assert after[task].data == before[task].data
        assert after[task].sha256 == before[task].sha256
        assert after[task].path.read_bytes() == content[task]


def test_a_modified_holdout_is_refused(seeded: Settings) -> None:
    frozen = frozen_holdouts(seeded)["topic"]
    lines = frozen.path.read_text().splitlines()
    frozen.path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(HoldoutError, match="does not match its manifest hash"):
        frozen_holdouts(seeded)
    frozen.path.unlink()
    with pytest.raises(HoldoutError, match="the frozen topic holdout is missing"):
        frozen_holdouts(seeded)


def test_no_seed_file_and_nothing_frozen_is_a_clear_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, sentiment_data=tmp_path / "nope.csv")
    with pytest.raises(
        HoldoutError, match=r"its seed file .*nope\.csv is missing: set FINSENT_SENTIMENT_DATA"
    ):
        frozen_holdouts(settings, tasks=("sentiment",))


def test_explicit_holdout_files_are_used_as_they_are(seeded: Settings, tmp_path: Path) -> None:
    own = write_csv(tmp_path / "mine.csv", make_sentiment_rows(n_per_class=4, seed=5))
    settings = settings_for(seeded.home, holdout_sentiment_data=own, topic_data=seeded.training.topic_data)
    holdouts = frozen_holdouts(settings)
    assert len(holdouts["sentiment"].data) == 12 and holdouts["sentiment"].origin == f"file {own}"
    assert not (holdout_dir(settings) / "sentiment.jsonl").exists()  # nothing frozen for it
    assert (holdout_dir(settings) / "topic.jsonl").is_file()


def test_exclude_holdout_removes_every_holdout_text(seeded: Settings) -> None:
    holdouts = frozen_holdouts(seeded)
    everything = load_task_files({"sentiment": seeded.training.sentiment_data})["sentiment"]
    kept = exclude_holdout(everything, holdouts)
    assert len(kept) == len(everything) - len(holdouts["sentiment"].data)
    assert not set(kept.texts) & set(holdouts["sentiment"].data.texts)


def test_evaluate_reuses_bert_core_metrics(saved_model_dir: Path) -> None:
    from tests.tiny_model import make_sentiment_rows as rows

    data = {
        "sentiment": LabelledData("sentiment", *map(list, zip(*rows(n_per_class=5, seed=3), strict=True)))
    }
    loaded = load_model_dir(saved_model_dir)
    expected = evaluate_sets(loaded.model, loaded.tokenizer, data, max_length=loaded.config.max_length)
    by_dir = evaluate_model(saved_model_dir, data)
    assert by_dir == {"sentiment": metrics_from_report(expected["sentiment"])}
    assert evaluate_model(loaded, data) == by_dir == evaluate_model(Predictor(loaded), data)
    got = by_dir["sentiment"]
    assert got.n == 15 and got.macro_f1 == expected["sentiment"]["macro_f1"]
    assert got.per_class_recall == {n: c["recall"] for n, c in expected["sentiment"]["per_class"].items()}
    assert got.per_class_support == {"bearish": 5, "bullish": 5, "neutral": 5}


def test_evaluate_on_holdouts_skips_empty_sets(saved_model_dir: Path, seeded: Settings) -> None:
    frozen = {t: h.data for t, h in frozen_holdouts(seeded).items()}
    recent = {"sentiment": LabelledData("sentiment", [], []), "topic": frozen["topic"].subset([0, 1, 2])}
    report = evaluate_on_holdouts(saved_model_dir, frozen, recent)
    assert isinstance(report, HoldoutReport)
    assert set(report.frozen) == {"sentiment", "topic"} and set(report.recent) == {"topic"}
    assert report.frozen["topic"].n == 20 and report.recent["topic"].n == 3
    assert 0.0 <= report.frozen["sentiment"].macro_f1 <= 1.0
