"""Cross-task distillation: a teacher's probabilities teach the heads a text has no label for."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bert_core import (
    DEFAULT_OWN_TASK_WEIGHT,
    TASKS,
    ModelConfigError,
    TrainConfig,
    format_own_task_weight,
    load_model_dir,
    parse_own_task_weight,
    save_model_dir,
)
from bert_core.batching import tokenize
from bert_core.inference.passes import predict_proba
from bert_core.recipes import teacher_mismatch, train_model
from bert_core.training import soft_cross_entropy, teacher_probabilities


def test_soft_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # softmax: [.25, .75] and [.5, .5]
    target = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    expected = (-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) - math.log(0.5)) / 2
    assert float(soft_cross_entropy(logits, target)) == pytest.approx(expected, abs=1e-6)


def test_soft_cross_entropy_at_a_temperature_by_hand() -> None:
    """T = 2: the targets become p^(1/2) renormalised, the logits are halved, the loss times 4.
    A one-hot row keeps its zeros (0^(1/T) = 0), so a float16 underflow cannot turn into NaN."""
    logits = torch.tensor([[0.0, math.log(9.0)], [math.log(4.0), 0.0]])  # halved: [.25, .75], [2/3, 1/3]
    target = torch.tensor([[0.64, 0.36], [0.0, 1.0]])  # softened: [4/7, 3/7], [0, 1]
    expected = 4 * (-(4 / 7 * math.log(0.25) + 3 / 7 * math.log(0.75)) - math.log(1 / 3)) / 2
    got = soft_cross_entropy(logits, target, temperature=2.0)
    assert float(got) == pytest.approx(expected, abs=1e-5)
    assert float(soft_cross_entropy(logits, target, temperature=1.0)) == pytest.approx(
        float(soft_cross_entropy(logits, target)), abs=0
    )


def test_a_distillation_temperature_reaches_the_loss_and_the_record(trained) -> None:
    """Same seed and targets, T = 1 against T = 2: the other head learns differently, and the
    model records the temperature it was distilled at; T <= 0 is one clear error."""
    from bert_core import ExperimentalOptions, fine_tune

    result = trained.result
    topic_only = {"topic": trained.train["topic"]}
    targets = teacher_probabilities([(result.model, result.tokenizer, 64)], topic_only)
    heads = {}
    for temperature in (1.0, 2.0):
        config = dataclasses.replace(
            trained.config, epochs=1, experimental=ExperimentalOptions(distill_temperature=temperature)
        )
        run = fine_tune(topic_only, {}, trained.label_names, config, teacher_targets=targets)
        assert run.model_config.training["distill_temperature"] == temperature
        heads[temperature] = run.model.heads["sentiment"].weight.detach().clone()
    assert float((heads[2.0] - heads[1.0]).abs().max()) > 1e-4
    for bad in (0.0, -1.0):
        options = ExperimentalOptions(distill_temperature=bad)
        config = dataclasses.replace(trained.config, experimental=options)
        with pytest.raises(ModelConfigError, match="distill_temperature must be positive"):
            fine_tune(topic_only, {}, trained.label_names, config, teacher_targets=targets)


def test_teacher_probabilities_cover_the_other_head_of_every_training_row(trained) -> None:
    result = trained.result
    targets = teacher_probabilities([(result.model, result.tokenizer, 64)], trained.train)
    assert set(targets) == {"sentiment", "topic"}
    assert set(targets["sentiment"]) == {"topic"}
    assert set(targets["topic"]) == {"sentiment"}
    assert targets["sentiment"]["topic"].shape == (len(trained.train["sentiment"]), 20)
    assert targets["topic"]["sentiment"].shape == (len(trained.train["topic"]), 3)
    for per_head in targets.values():
        for probs in per_head.values():
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def _agreement_with_teacher(model_dir: Path, teacher_dir: Path, texts: list[str]) -> float:
    """Share of `texts` whose topic the model and the teacher agree on."""
    labels = []
    for path in (model_dir, teacher_dir):
        loaded = load_model_dir(path)
        tokens = tokenize(loaded.tokenizer, texts, 64)
        labels.append(predict_proba(loaded.model, tokens, 0, tasks=["topic"])["topic"].argmax(axis=1))
    return float((labels[0] == labels[1]).mean())


def test_a_student_learns_the_teachers_topics_on_sentiment_texts(
    trained, saved_model_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    paths = {"sentiment": sentiment_csv, "topic": topic_csv}
    base = dataclasses.replace(trained.config, epochs=4, seed=0)
    plain, _ = train_model(paths, tmp_path / "plain", base, dev_fraction=0.2)
    taught, manifest = train_model(
        paths,
        tmp_path / "taught",
        dataclasses.replace(base, teachers=(str(saved_model_dir),), distill_weight=1.0),
        dev_fraction=0.2,
    )
    teacher_version = load_model_dir(saved_model_dir).manifest.version
    assert taught.model_config.training["teacher"] == {
        "versions": [teacher_version],
        "distill_weight": 1.0,
        "own_task_weight": {"sentiment": 0.5},  # the default recipe's share
    }
    assert plain.model_config.training["teacher"] is None
    # Sentiment texts carry no topic label: only the teacher can teach their topics.
    texts = trained.train["sentiment"].texts
    assert _agreement_with_teacher(tmp_path / "taught", saved_model_dir, texts) > _agreement_with_teacher(
        tmp_path / "plain", saved_model_dir, texts
    )
    assert manifest.version


def test_a_teacher_from_another_split_is_refused(
    trained, saved_model_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    config = dataclasses.replace(trained.config, epochs=1, seed=0, teachers=(str(saved_model_dir),))
    with pytest.raises(ModelConfigError, match="other rows than this training split"):
        train_model(
            {"sentiment": sentiment_csv, "topic": topic_csv}, tmp_path / "m", config, dev_fraction=0.3
        )
    assert not (tmp_path / "m").exists()


def test_the_teacher_check_names_what_differs(trained, saved_model_dir: Path) -> None:
    """One check for `--teacher`, `finsent teacher-targets` and the cross-fitting benchmark."""
    teacher = load_model_dir(saved_model_dir)
    assert teacher_mismatch(teacher, trained.train, rows_remedy="R") is None
    one_task = {"sentiment": trained.train["sentiment"]}
    rows = teacher_mismatch(teacher, one_task, rows_remedy="match the split")
    assert rows is not None and "other rows than this training split" in rows
    assert rows.endswith("; match the split")
    teacher.config.labels["sentiment"] = list(reversed(teacher.config.labels["sentiment"]))
    labels = teacher_mismatch(teacher, trained.train, rows_remedy="match the split")
    assert labels == "the teacher has no sentiment head with the default labels"  # no split advice


def test_several_teachers_give_their_mean_probabilities_own_task_included(trained, saved_model_dir) -> None:
    first = trained.result
    second = load_model_dir(saved_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():  # a different second teacher: perturb its sentiment head
        second.model.heads["sentiment"].weight.add_(torch.randn_like(second.model.heads["sentiment"].weight))
    teachers = [(first.model, first.tokenizer, 64), (second.model, second.tokenizer, 64)]
    both = teacher_probabilities(teachers, trained.train, own_task=True)
    alone = [teacher_probabilities([t], trained.train, own_task=True) for t in teachers]
    assert set(both["sentiment"]) == {"sentiment", "topic"}
    for task in ("sentiment", "topic"):
        for head in ("sentiment", "topic"):
            np.testing.assert_allclose(
                both[task][head], (alone[0][task][head] + alone[1][task][head]) / 2, atol=1e-6
            )
    assert not np.allclose(alone[0]["sentiment"]["sentiment"], alone[1]["sentiment"]["sentiment"], atol=1e-3)


def test_own_task_weight_one_learns_the_teacher_instead_of_the_labels(
    trained, saved_model_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    """With the whole own-task loss on a teacher whose sentiment labels are flipped, the
    student follows the teacher, not the labels: the soft targets really replace them."""
    flipped = tmp_path / "teacher"
    shutil.copytree(saved_model_dir, flipped)
    teacher = load_model_dir(flipped)
    with torch.no_grad():  # bearish <-> bullish rows of the head
        head = teacher.model.heads["sentiment"]
        head.weight[[0, 2]] = head.weight[[2, 0]].clone()
        head.bias[[0, 2]] = head.bias[[2, 0]].clone()
    save_model_dir(
        flipped,
        teacher.model,
        teacher.tokenizer,
        teacher.config,
        metrics={},
        data_hash=teacher.manifest.data_hash,
        overwrite=True,
    )
    paths = {"sentiment": sentiment_csv, "topic": topic_csv}
    config = dataclasses.replace(
        trained.config, epochs=6, seed=0, teachers=(str(flipped),), own_task_weight=1.0
    )
    student, _ = train_model(paths, tmp_path / "student", config, dev_fraction=0.2)
    assert student.model_config.training["teacher"]["own_task_weight"] == 1.0
    texts = trained.train["sentiment"].texts
    labels = np.array(trained.train["sentiment"].labels)
    tokens = tokenize(student.tokenizer, texts, 64)
    predicted = predict_proba(student.model, tokens, 0, tasks=["sentiment"])["sentiment"].argmax(axis=1)
    taught = predict_proba(teacher.model, tokens, 0, tasks=["sentiment"])["sentiment"].argmax(axis=1)
    assert (predicted == taught).mean() > 0.6
    assert (predicted == labels).mean() < (predicted == taught).mean()


def test_own_task_weight_leaves_the_other_heads_distillation_whole(trained) -> None:
    """Topic texts teach the sentiment head from the teacher even when the whole own-task loss
    is soft (W = 1): the weight scales the own head's terms only, in any head order."""
    from bert_core import fine_tune

    result = trained.result
    topic_only = {"topic": trained.train["topic"]}
    targets = teacher_probabilities([(result.model, result.tokenizer, 64)], topic_only, own_task=True)
    assert list(targets["topic"]) == ["sentiment", "topic"]  # the own head last: the order that broke
    config = dataclasses.replace(trained.config, epochs=1, own_task_weight=1.0)
    heads = {}
    for weight in (0.0, 1.0):  # same seed, same start: only the sentiment distillation differs
        run = fine_tune(
            topic_only,
            {},
            trained.label_names,
            dataclasses.replace(config, distill_weight=weight),
            teacher_targets=targets,
        )
        heads[weight] = run.model.heads["sentiment"].weight.detach().clone()
    assert float((heads[1.0] - heads[0.0]).abs().max()) > 1e-4


def test_own_task_weight_out_of_range_is_refused(trained) -> None:
    from bert_core import fine_tune

    sets = {"sentiment": trained.train["sentiment"]}
    for weight in (1.5, {"sentiment": -0.1}):
        with pytest.raises(ModelConfigError, match=r"within 0\.\.1"):
            fine_tune(
                sets, {}, trained.label_names, dataclasses.replace(trained.config, own_task_weight=weight)
            )


def test_the_default_own_task_weight_distils_sentiment_only_and_is_moot_without_soft_targets(
    trained,
) -> None:
    """The default recipe's share: half of sentiment's own loss from the teacher, topic on its
    labels. Without soft targets a run trains on labels alone and records no teacher."""
    from bert_core import fine_tune

    default = TrainConfig()
    assert dict(default.own_task_weight) == dict(DEFAULT_OWN_TASK_WEIGHT) == {"sentiment": 0.5}
    assert default.own_task_weight is not TrainConfig().own_task_weight  # no shared mutable default
    given = TrainConfig(own_task_weight=DEFAULT_OWN_TASK_WEIGHT)  # the read-only constant itself
    assert dataclasses.asdict(given)["own_task_weight"] == {"sentiment": 0.5}  # a model records it
    sets = {"sentiment": trained.train["sentiment"]}
    config = dataclasses.replace(trained.config, epochs=1, own_task_weight=dict(DEFAULT_OWN_TASK_WEIGHT))
    run = fine_tune(sets, {}, trained.label_names, config)
    assert run.model_config.training["teacher"] is None


def test_a_per_task_own_weight_distils_the_named_task_only(trained) -> None:
    """{"sentiment": 1} leaves topic texts on their labels alone (the same weights as no
    own-task distillation, to the bit), while {"topic": 1} moves the topic head."""
    from bert_core import fine_tune

    result = trained.result
    topic_only = {"topic": trained.train["topic"]}
    targets = teacher_probabilities([(result.model, result.tokenizer, 64)], topic_only, own_task=True)
    heads = {}
    for name, weight in (("none", 0.0), ("sentiment", {"sentiment": 1.0}), ("topic", {"topic": 1.0})):
        config = dataclasses.replace(trained.config, epochs=1, own_task_weight=weight)
        run = fine_tune(topic_only, {}, trained.label_names, config, teacher_targets=targets)
        heads[name] = run.model.heads["topic"].weight.detach().clone()
    assert torch.equal(heads["sentiment"], heads["none"])
    assert float((heads["topic"] - heads["none"]).abs().max()) > 1e-4


def test_the_own_task_weight_is_one_share_or_one_per_task() -> None:
    assert parse_own_task_weight("0.5", TASKS) == 0.5
    for weight in (0.5, {"sentiment": 0.5}, {"sentiment": 0.5, "topic": 0.0}):
        assert parse_own_task_weight(format_own_task_weight(weight), TASKS) == weight
    assert parse_own_task_weight(" sentiment=0.5, topic=0 ", TASKS) == {"sentiment": 0.5, "topic": 0.0}
    per_task = TrainConfig(own_task_weight={"sentiment": 0.5})
    assert (per_task.own_weight("sentiment"), per_task.own_weight("topic")) == (0.5, 0.0)
    assert per_task.distills_own_task
    assert not TrainConfig(own_task_weight={"topic": 0.0}).distills_own_task
    assert TrainConfig(own_task_weight=0.25).own_weight("topic") == 0.25
    for text, reason in (
        ("half", "is not a number"),
        ("-0.1", "is outside 0..1"),
        ("sentiment=2", "outside 0..1"),
        ("mood=0.5", "unknown task 'mood'"),
        ("sentiment=0.5,sentiment=0.2", "given twice"),
    ):
        with pytest.raises(ValueError, match=reason):
            parse_own_task_weight(text, TASKS)
