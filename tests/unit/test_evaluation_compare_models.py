"""Comparing models on the same texts (`bert_core.compare_models`, behind `finsent evaluate
--model A --model B`): each model's report, and the report of the mean of their probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TrainedModel

from bert_core import (
    LabelledData,
    classification_report,
    compare_models,
    task_probabilities,
    training_summary,
)

NAMES = {"sentiment": ["bearish", "neutral", "bullish"]}


def _sets(labels: list[int]) -> dict[str, LabelledData]:
    return {"sentiment": LabelledData("sentiment", [f"text {i}" for i in range(len(labels))], labels)}


def test_the_mean_of_two_models_can_beat_both() -> None:
    # Each model is confidently right on two texts and narrowly wrong on the third; their
    # mean is right on all three.
    sets = _sets([0, 1, 2])
    a = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.1, 0.46, 0.44]])
    b = np.array([[0.44, 0.46, 0.1], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]])
    result = compare_models(sets, {"a": {"sentiment": a}, "b": {"sentiment": b}}, NAMES)
    assert result.members["a"]["sentiment"]["accuracy"] == pytest.approx(2 / 3)
    assert result.members["b"]["sentiment"]["accuracy"] == pytest.approx(2 / 3)
    assert result.ensemble["sentiment"]["accuracy"] == 1.0
    assert result.ensemble["sentiment"]["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_misaligned_probabilities_are_refused() -> None:
    sets = _sets([0, 1, 2])
    good = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="b: sentiment probabilities of shape"):
        compare_models(sets, {"a": {"sentiment": good}, "b": {"sentiment": good[:2]}}, NAMES)
    with pytest.raises(ValueError, match="no models"):
        compare_models(sets, {}, NAMES)


def test_comparison_of_the_tiny_model(trained: TrainedModel) -> None:
    model, tokenizer = trained.result.model, trained.result.tokenizer
    probs = task_probabilities(
        model, tokenizer, trained.dev, max_length=trained.result.model_config.max_length
    )
    # A second "model" that ranks the classes backwards: mostly wrong where the first is right.
    backwards = {task: p[:, ::-1].copy() for task, p in probs.items()}
    result = compare_models(trained.dev, {"tiny": probs, "backwards": backwards}, trained.label_names)
    for task, data in trained.dev.items():
        expected = classification_report(
            data.labels, probs[task].argmax(1).tolist(), trained.label_names[task]
        )
        assert result.members["tiny"][task]["accuracy"] == expected["accuracy"]
        assert result.members["tiny"][task]["macro_f1"] == expected["macro_f1"]
        mean = (probs[task] + backwards[task]) / 2
        assert (
            result.ensemble[task]["accuracy"]
            == classification_report(data.labels, mean.argmax(1).tolist(), trained.label_names[task])[
                "accuracy"
            ]
        )
        assert result.members["tiny"][task]["accuracy"] > result.members["backwards"][task]["accuracy"]
    # A model compared with itself: the mean is the model.
    alone = compare_models(trained.dev, {"x": probs, "y": probs}, trained.label_names)
    for task in trained.dev:
        assert alone.ensemble[task]["accuracy"] == alone.members["x"][task]["accuracy"]
        assert alone.ensemble[task]["ece"] == pytest.approx(alone.members["x"][task]["ece"])


def test_training_summary_reads_the_recorded_run() -> None:
    summary = training_summary(
        {"seconds": 918.0, "mlm": {"seconds": 120.0}}, {"history": [{"epoch": 1.0}, {"epoch": 3.5}]}
    )
    assert summary == {"epochs_run": 3.5, "train_minutes": 15.3, "mlm_minutes": 2.0}
    assert training_summary({}, {}) == {"epochs_run": 0, "train_minutes": 0.0, "mlm_minutes": None}
