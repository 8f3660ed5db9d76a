"""Fine-tuning the multi-task classifier on the tiny encoder."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bert_core import (
    DataError,
    ExperimentalOptions,
    LabelledData,
    ModelConfigError,
    MultiTaskClassifier,
    TrainConfig,
    class_weights,
    evaluate_sets,
    fine_tune,
    load_encoder,
)
from bert_core.batching import collate, tokenize
from bert_core.inference.passes import predict_proba


def _mean_loss(model: MultiTaskClassifier, tokenizer, data: LabelledData) -> float:
    """Unweighted mean cross-entropy of one task's rows, in eval mode."""
    tokens = tokenize(tokenizer, data.texts, 64)
    batch = collate(tokens, list(range(len(tokens))), int(tokenizer.pad_token_id), data.labels)
    model.eval()
    with torch.no_grad():
        logits = model(batch.input_ids, batch.attention_mask, tasks=[data.task])[data.task]
        return float(nn.functional.cross_entropy(logits, batch.labels))


# ------------------------------------------------------------------ class weights


def test_class_weights_none() -> None:
    assert class_weights([0, 0, 0, 1], 3, "none").tolist() == [1.0, 1.0, 1.0]


def test_class_weights_inverse_by_hand() -> None:
    # Frequencies 3/4, 1/4 (class 2 absent): 1/f = 4/3, 4, mean 8/3 -> 0.5, 1.5; absent class 0.
    weights = class_weights([0, 0, 0, 1], 3, "inverse")
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([0.5, 1.5, 0.0])


def test_class_weights_sqrt_inverse_by_hand() -> None:
    # 1/sqrt(3/4) = 2/sqrt(3), 1/sqrt(1/4) = 2; normalised to mean 1: sqrt(3) - 1 and 3 - sqrt(3).
    weights = class_weights([0, 0, 0, 1], 3, "sqrt_inverse")
    assert weights.tolist() == pytest.approx([math.sqrt(3) - 1, 3 - math.sqrt(3), 0.0], rel=1e-6)


def test_class_weights_balanced_classes_are_one() -> None:
    for scheme in ("inverse", "sqrt_inverse"):
        assert class_weights([0, 1, 2, 2, 1, 0], 3, scheme).tolist() == pytest.approx([1.0, 1.0, 1.0])


# ------------------------------------------------------------------ the session fine-tune


def test_fine_tune_lowers_training_loss(trained, tiny_bert_dir: Path) -> None:
    result = trained.result
    # The untrained classifier: heads start near zero, so its loss is ~ln(number of classes).
    torch.manual_seed(trained.config.seed)
    encoder, tokenizer, _ = load_encoder(tiny_bert_dir)
    fresh = MultiTaskClassifier(encoder, trained.label_names, pooling="mean", dropout=0.0)
    for task, n_classes in (("sentiment", 3), ("topic", 20)):
        before = _mean_loss(fresh, tokenizer, trained.train[task])
        after = _mean_loss(result.model, result.tokenizer, trained.train[task])
        assert before == pytest.approx(math.log(n_classes), abs=0.1)
        assert after < 0.6 * before, task


def test_history_records_loss_and_dev_scores(trained) -> None:
    history = trained.result.history
    assert len(history) == trained.config.epochs * trained.config.evals_per_epoch
    for entry in history:
        assert {
            "step",
            "epoch",
            "loss",
            "dev_mean_macro_f1",
            "dev_sentiment_macro_f1",
            "dev_topic_accuracy",
        } <= set(entry)
        assert entry["loss"] > 0
    steps = [e["step"] for e in history]
    assert steps == sorted(steps)
    # 90 sentiment rows -> 72 train (6 of 30 per class to dev); 120 topic rows -> 100 train
    # (1 of 6 per class to dev); batches of 16: 5 + 7 steps per epoch.
    assert (len(trained.train["sentiment"]), len(trained.train["topic"])) == (72, 100)
    assert steps[-1] == trained.config.epochs * (5 + 7)


def test_dev_macro_f1_beats_chance(trained) -> None:
    reports = trained.result.dev_reports
    assert reports["sentiment"]["n"] == len(trained.dev["sentiment"])
    assert reports["sentiment"]["macro_f1"] > 0.5  # chance is 1/3
    assert reports["topic"]["macro_f1"] > 0.2  # chance is 1/20


def test_best_checkpoint_is_the_returned_model(trained) -> None:
    result = trained.result
    best = max(h["dev_mean_macro_f1"] for h in result.history)
    now = evaluate_sets(result.model, result.tokenizer, trained.dev, max_length=64)  # the heads alone
    served = evaluate_sets(
        result.model, result.tokenizer, trained.dev, max_length=64, memories=result.memories
    )
    for task in ("sentiment", "topic"):
        assert served[task]["macro_f1"] == pytest.approx(result.dev_reports[task]["macro_f1"])
        assert served[task]["confusion_matrix"] == result.dev_reports[task]["confusion_matrix"]
    # the selection compared the heads alone
    mean_now = (now["sentiment"]["macro_f1"] + now["topic"]["macro_f1"]) / 2
    assert mean_now == pytest.approx(best)
    assert not result.model.training


def test_model_config_describes_the_run(trained, tiny_bert_dir: Path) -> None:
    cfg = trained.result.model_config
    assert cfg.labels == trained.label_names
    assert cfg.base_model == str(tiny_bert_dir.resolve())
    assert cfg.max_length == 64
    assert cfg.pooling == "mean"
    assert cfg.training["train_rows"] == {t: len(d) for t, d in trained.train.items()}
    assert cfg.training["learning_rate"] == trained.config.learning_rate
    assert "progress" not in cfg.training
    assert trained.result.parent_version is None


# ------------------------------------------------------------------ more fine-tune behaviour


def test_loss_in_history_is_not_reset_each_epoch(trained, tiny_bert_dir: Path) -> None:
    # With zero learning rates nothing changes, so every batch loss is ~ln(3) and so must
    # be the smoothed loss logged at the end of every epoch (it used to restart from 0).
    config = TrainConfig(
        base_model=str(tiny_bert_dir),
        epochs=3,
        batch_size=16,
        learning_rate=0.0,
        head_learning_rate=0.0,
        evals_per_epoch=1,
        dropout=0.0,
        patience=100,
        progress=False,
    )
    sets = {"sentiment": trained.train["sentiment"]}
    result = fine_tune(sets, {"sentiment": trained.dev["sentiment"]}, trained.label_names, config)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 3
    assert losses == pytest.approx([math.log(3)] * 3, abs=0.05)


def test_without_dev_sets_training_is_not_stopped_early(trained, tiny_bert_dir: Path) -> None:
    # Without dev data the score is -loss; a topic loss > 1 used to count as "no improvement"
    # against the initial best of -1 and stopped training after `patience` evaluations.
    config = TrainConfig(
        base_model=str(tiny_bert_dir),
        epochs=3,
        batch_size=16,
        learning_rate=1e-3,
        evals_per_epoch=1,
        patience=2,
        progress=False,
    )
    result = fine_tune({"topic": trained.train["topic"]}, {}, trained.label_names, config)
    assert len(result.history) == 3
    assert result.history[0]["loss"] > 1.0
    assert result.dev_reports == {}


def test_warm_start_reproduces_the_parent(trained, saved_model_dir: Path) -> None:
    from bert_core import load_model_dir

    parent = load_model_dir(saved_model_dir)
    config = TrainConfig(
        init_from=str(saved_model_dir),
        epochs=1,
        batch_size=16,
        learning_rate=0.0,
        head_learning_rate=0.0,
        evals_per_epoch=1,
        progress=False,
    )
    result = fine_tune(trained.train, trained.dev, trained.label_names, config)
    assert result.parent_version == parent.manifest.version
    assert result.model_config.base_model == parent.config.base_model
    # Zero learning rate: the warm-started model is exactly the parent.
    tokens = tokenize(result.tokenizer, trained.dev["sentiment"].texts, 64)
    ours = predict_proba(result.model, tokens, 0)
    theirs = predict_proba(parent.model, tokens, 0)
    for task in ("sentiment", "topic"):
        np.testing.assert_allclose(ours[task], theirs[task], atol=1e-6)
    assert result.dev_reports["sentiment"]["macro_f1"] == pytest.approx(
        trained.result.dev_reports["sentiment"]["macro_f1"]
    )


def test_warm_start_then_training_moves_the_weights(trained, saved_model_dir: Path) -> None:
    from bert_core import load_model_dir

    parent = load_model_dir(saved_model_dir)
    config = TrainConfig(
        init_from=str(saved_model_dir),
        epochs=1,
        batch_size=16,
        learning_rate=1e-3,
        evals_per_epoch=1,
        progress=False,
    )
    result = fine_tune(trained.train, trained.dev, trained.label_names, config)
    before = parent.model.heads["sentiment"].weight
    after = result.model.heads["sentiment"].weight
    assert not torch.allclose(before, after)
    assert result.dev_reports["sentiment"]["macro_f1"] > 0.5


def test_warm_start_with_other_labels_is_refused(trained, saved_model_dir: Path) -> None:
    labels = {**trained.label_names, "sentiment": ["negative", "positive", "neutral"]}
    config = TrainConfig(init_from=str(saved_model_dir), epochs=1, progress=False)
    with pytest.raises(ModelConfigError, match="sentiment labels differ"):
        fine_tune(trained.train, trained.dev, labels, config)


def test_fine_tune_needs_data_and_labels(trained, tiny_bert_dir: Path) -> None:
    config = TrainConfig(base_model=str(tiny_bert_dir), epochs=1, progress=False)
    with pytest.raises(DataError, match="no training data"):
        fine_tune({}, {}, trained.label_names, config)
    with pytest.raises(DataError, match="no label set for task 'sentiment'"):
        fine_tune(
            {"sentiment": trained.train["sentiment"]}, {}, {"topic": trained.label_names["topic"]}, config
        )


def test_unknown_base_model_is_a_config_error(trained, tmp_path: Path) -> None:
    config = TrainConfig(base_model=str(tmp_path), epochs=1, progress=False)
    with pytest.raises(ModelConfigError, match=r"no config\.json"):
        fine_tune(trained.train, trained.dev, trained.label_names, config)


def test_lr_factor_warms_up_then_decays_to_zero() -> None:
    from bert_core.training import lr_factor

    assert lr_factor(0, warmup=10, total=110) == pytest.approx(0.1)
    assert lr_factor(9, warmup=10, total=110) == pytest.approx(1.0)
    assert lr_factor(60, warmup=10, total=110) == pytest.approx(0.5)
    assert lr_factor(110, warmup=10, total=110) == 0.0


def test_lr_factor_follows_the_time_budget_when_it_runs_out_first() -> None:
    from bert_core.training import lr_factor

    # 10% of the steps done but 75% of the time budget used: decay by time.
    assert lr_factor(20, warmup=10, total=110, time_progress=0.75) == pytest.approx(0.25)
    assert lr_factor(20, warmup=10, total=110, time_progress=1.2) == 0.0


def test_word_embeddings_stay_frozen_by_default(tiny_bert_dir, sentiment_csv) -> None:
    from bert_core import DEFAULT_LABELS, LabelSet, TrainConfig, fine_tune, load_encoder, read_labelled

    data = read_labelled(sentiment_csv, LabelSet("sentiment", DEFAULT_LABELS["sentiment"]))
    encoder, _, _ = load_encoder(tiny_bert_dir)
    before = encoder.get_input_embeddings().weight.detach().clone()
    result = fine_tune(
        {"sentiment": data},
        {"sentiment": data},
        {"sentiment": list(DEFAULT_LABELS["sentiment"])},
        TrainConfig(base_model=str(tiny_bert_dir), epochs=1, batch_size=16, progress=False),
    )
    after = result.model.encoder.get_input_embeddings().weight
    assert torch.equal(before, after)
    # ... while the transformer layers did train.
    layer_before = encoder.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(layer_before, result.model.encoder.encoder.layer[0].attention.self.query.weight)


def test_ema_weights_are_the_ones_evaluated_and_kept(trained, tiny_bert_dir: Path) -> None:
    config = TrainConfig(
        base_model=str(tiny_bert_dir),
        epochs=2,
        batch_size=16,
        learning_rate=1e-3,
        evals_per_epoch=2,
        patience=100,
        experimental=ExperimentalOptions(ema_decay=0.9),
        progress=False,
    )
    sets = {"sentiment": trained.train["sentiment"]}
    dev = {"sentiment": trained.dev["sentiment"]}
    result = fine_tune(sets, dev, trained.label_names, config)
    best = max(h["dev_mean_macro_f1"] for h in result.history)
    now = evaluate_sets(result.model, result.tokenizer, dev, max_length=64)
    assert now["sentiment"]["macro_f1"] == pytest.approx(best)
    assert now["sentiment"]["confusion_matrix"] == result.dev_reports["sentiment"]["confusion_matrix"]
    assert result.model_config.training["ema_decay"] == 0.9
    no_ema = dataclasses.replace(config, experimental=ExperimentalOptions())
    plain = fine_tune(sets, dev, trained.label_names, no_ema)
    first = result.model.heads["sentiment"].weight
    assert not torch.equal(first, plain.model.heads["sentiment"].weight)  # the average is not the raw run


# ------------------------------------------------------------------ mixed precision


def test_auto_precision_follows_the_cpu(monkeypatch) -> None:
    from bert_core import training

    monkeypatch.setattr(training, "cpu_has_bf16", lambda: True)
    assert training.resolve_train_precision("auto") == "bf16"
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: False)
    assert training.resolve_train_precision("auto") == "fp32"
    assert training.resolve_train_precision("bf16") == "bf16"  # honoured, with a warning
    assert training.resolve_train_precision("fp32") == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_train_and_keep_fp32_weights(trained, tiny_bert_dir: Path, precision: str) -> None:
    """bf16 autocast runs the products in bf16 but the weights and optimiser stay fp32."""
    config = TrainConfig(**{**trained.config.__dict__, "precision": precision})
    data = trained.train["sentiment"]
    result = fine_tune({"sentiment": data}, {}, trained.label_names, config)
    assert result.model_config.training["precision"] == precision
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}
    torch.manual_seed(config.seed)
    encoder, tokenizer, _ = load_encoder(tiny_bert_dir)
    fresh = MultiTaskClassifier(encoder, trained.label_names, pooling="mean", dropout=0.0)
    assert _mean_loss(result.model, result.tokenizer, data) < 0.7 * _mean_loss(fresh, tokenizer, data)


def test_init_seed_changes_the_run_not_the_dev_split(
    trained, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    from bert_core.recipes import train_model

    paths = {"sentiment": sentiment_csv, "topic": topic_csv}
    base = dataclasses.replace(trained.config, epochs=1, precision="fp32")
    runs = {
        name: train_model(paths, tmp_path / name, config, dev_fraction=0.2)
        for name, config in {
            "plain": base,
            "same": dataclasses.replace(base, init_seed=base.seed),
            "other": dataclasses.replace(base, init_seed=base.seed + 1),
        }.items()
    }
    manifests = {name: manifest for name, (_, manifest) in runs.items()}
    weights = {name: result.model.heads["sentiment"].weight for name, (result, _) in runs.items()}
    # One training split (the data hash covers its rows), so one dev split...
    assert len({m.data_hash for m in manifests.values()}) == 1
    # ...and init_seed = seed is the plain run, another init_seed another run.
    assert torch.equal(weights["plain"], weights["same"])
    assert not torch.equal(weights["plain"], weights["other"])


def test_layer_lr_decay_gives_each_depth_its_learning_rate(tiny_bert_dir: Path) -> None:
    from bert_core import DEFAULT_LABELS
    from bert_core.training import _param_groups

    encoder, _, _ = load_encoder(tiny_bert_dir)  # 2 layers
    model = MultiTaskClassifier(encoder, {"sentiment": list(DEFAULT_LABELS["sentiment"])}, pooling="mean")
    config = TrainConfig(
        learning_rate=1e-4, head_learning_rate=1e-3, experimental=ExperimentalOptions(layer_lr_decay=0.5)
    )
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in _param_groups(model, config) for p in g["params"]}
    named = dict(model.named_parameters())

    def lr(name: str) -> float:
        return lr_of[id(named[name])][0]

    assert lr("encoder.encoder.layer.1.attention.self.query.weight") == pytest.approx(0.5e-4)  # top
    assert lr("encoder.encoder.layer.0.attention.self.query.weight") == pytest.approx(0.25e-4)
    assert lr("encoder.embeddings.position_embeddings.weight") == pytest.approx(0.125e-4)
    assert all(lr(n) == 1e-3 for n in named if n.startswith("heads."))
    assert id(named["encoder.embeddings.word_embeddings.weight"]) not in lr_of  # frozen
    assert lr_of[id(named["encoder.encoder.layer.1.output.LayerNorm.weight"])][1] == 0.0  # not decayed
    assert len(lr_of) == sum(1 for p in model.parameters() if p.requires_grad)


def with_rdrop(config: TrainConfig, alpha: float) -> TrainConfig:
    experimental = dataclasses.replace(config.experimental, rdrop_alpha=alpha)
    return dataclasses.replace(config, experimental=experimental)


def test_without_layer_lr_decay_the_encoder_trains_at_one_learning_rate(tiny_bert_dir: Path) -> None:
    from bert_core import DEFAULT_LABELS
    from bert_core.training import _param_groups

    encoder, _, _ = load_encoder(tiny_bert_dir)
    model = MultiTaskClassifier(encoder, {"sentiment": list(DEFAULT_LABELS["sentiment"])}, pooling="mean")
    groups = _param_groups(model, TrainConfig(learning_rate=2e-5, head_learning_rate=1e-3))
    assert sorted({(g["lr"], g["weight_decay"]) for g in groups}) == [(2e-5, 0.0), (2e-5, 0.01), (1e-3, 0.01)]


# ------------------------------------------------------------------ R-Drop


def test_symmetric_kl_by_hand() -> None:
    from bert_core.training import symmetric_kl

    a = torch.log(torch.tensor([[0.5, 0.5], [0.2, 0.8]]))
    b = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    row0 = (
        0.5 * math.log(0.5 / 0.9)
        + 0.5 * math.log(0.5 / 0.1)
        + 0.9 * math.log(0.9 / 0.5)
        + 0.1 * math.log(0.1 / 0.5)
    )
    # Row 1 agrees (KL 0); halved for the symmetric pair, averaged over the two rows.
    assert float(symmetric_kl(a, b)) == pytest.approx(0.5 * row0 / 2, rel=1e-5)
    assert float(symmetric_kl(b, a)) == pytest.approx(float(symmetric_kl(a, b)))
    assert float(symmetric_kl(a, a + 3.0)) == pytest.approx(0.0, abs=1e-7)  # logits, not probabilities


def test_rdrop_trains_and_its_weight_acts(trained, tiny_bert_dir: Path) -> None:
    config = with_rdrop(trained.config, 1.0)
    data = {"sentiment": trained.train["sentiment"]}
    result = fine_tune(data, {}, trained.label_names, config)
    assert result.model_config.training["rdrop_alpha"] == 1.0
    torch.manual_seed(config.seed)
    encoder, tokenizer, _ = load_encoder(tiny_bert_dir)
    fresh = MultiTaskClassifier(encoder, trained.label_names, pooling="mean", dropout=0.0)
    loss = _mean_loss(result.model, result.tokenizer, data["sentiment"])
    assert loss < 0.7 * _mean_loss(fresh, tokenizer, data["sentiment"])
    # Same doubled batches and dropout masks, another weight on the consistency term.
    heavier = fine_tune(data, {}, trained.label_names, with_rdrop(config, 4.0))
    assert not torch.equal(result.model.heads["sentiment"].weight, heavier.model.heads["sentiment"].weight)


def test_without_dropout_rdrop_is_the_plain_run(trained, tiny_bert_dir: Path, tmp_path: Path) -> None:
    """The stacked batch's two halves differ only by their dropout masks: with none, the
    consistency term is zero and the mean loss over the doubled rows is the plain loss."""
    import shutil

    from transformers import BertConfig

    no_dropout = tmp_path / "tiny-bert-no-dropout"
    shutil.copytree(tiny_bert_dir, no_dropout)
    bert_config = BertConfig.from_pretrained(no_dropout)
    bert_config.hidden_dropout_prob = bert_config.attention_probs_dropout_prob = 0.0
    bert_config.save_pretrained(no_dropout)
    config = dataclasses.replace(trained.config, base_model=str(no_dropout), dropout=0.0, epochs=2)
    data = {"sentiment": trained.train["sentiment"]}
    rdrop = fine_tune(data, {}, trained.label_names, with_rdrop(config, 1.0))
    plain = fine_tune(data, {}, trained.label_names, config)
    # The doubled batch sums its rows in another order, and Adam's normalised steps can turn
    # that rounding in a near-zero gradient into a visible step: on an AVX-512 CPU one weight
    # of 8,896 ended 1.3e-5 apart. A wrong half (labels, rows, masks) moves weights by the
    # learning rate (3e-3) per step, far beyond this tolerance.
    for name, weight in plain.model.state_dict().items():
        torch.testing.assert_close(rdrop.model.state_dict()[name], weight, atol=1e-4, rtol=1e-3)


def test_negative_rdrop_alpha_is_refused(trained) -> None:
    config = with_rdrop(trained.config, -0.5)
    with pytest.raises(ModelConfigError, match="rdrop_alpha"):
        fine_tune({"sentiment": trained.train["sentiment"]}, {}, trained.label_names, config)


def with_experimental(config: TrainConfig, **options: float) -> TrainConfig:
    return dataclasses.replace(config, experimental=dataclasses.replace(config.experimental, **options))


@pytest.mark.parametrize("option", [{"augment_share": 0.5}, {"fgm_epsilon": 1.0}])
def test_augmentation_and_fgm_runs_complete(trained, tiny_bert_dir: Path, option: dict[str, float]) -> None:
    config = dataclasses.replace(with_experimental(trained.config, **option), epochs=2)
    result = fine_tune(trained.train, trained.dev, trained.label_names, config)
    ((name, value),) = option.items()
    assert result.model_config.training[name] == value
    assert result.model_config.training["steps"] > 0
    assert all(math.isfinite(h["loss"]) for h in result.history)
    assert set(result.dev_reports) == {"sentiment", "topic"}


def test_fgm_leaves_frozen_word_embeddings_frozen_and_unchanged(trained, tiny_bert_dir: Path) -> None:
    config = dataclasses.replace(
        with_experimental(trained.config, fgm_epsilon=1.0), epochs=1, freeze_word_embeddings=True
    )
    before = load_encoder(str(tiny_bert_dir))[0].get_input_embeddings().weight.detach().clone()
    result = fine_tune(trained.train, {}, trained.label_names, config)
    after = result.model.encoder.get_input_embeddings().weight
    assert not after.requires_grad and after.grad is None
    torch.testing.assert_close(after.detach(), before, rtol=0, atol=0)


def test_negative_augment_share_or_fgm_epsilon_is_refused(trained) -> None:
    for option, value in (("augment_share", 1.5), ("fgm_epsilon", -1.0)):
        with pytest.raises(ModelConfigError, match=option):
            config = with_experimental(trained.config, **{option: value})
            fine_tune(trained.train, {}, trained.label_names, config)


def test_augmentation_changes_only_texts_with_something_to_substitute(trained) -> None:
    """The fixture's texts name no cashtag, listed company (they are lower-case) or figure
    other than years: augmenting all of them is the plain run. With a cashtag in every text the
    substituted texts are what trains (a different run), and the dev texts are not touched."""
    config = dataclasses.replace(trained.config, epochs=2)
    data = {"sentiment": trained.train["sentiment"]}
    plain = fine_tune(data, {}, trained.label_names, config)
    augmented = fine_tune(data, {}, trained.label_names, with_experimental(config, augment_share=1.0))
    for name, weight in plain.model.state_dict().items():
        torch.testing.assert_close(augmented.model.state_dict()[name], weight, rtol=0, atol=0)

    sentiment = data["sentiment"]
    tagged = LabelledData(
        "sentiment",
        [f"{('$AAPL', '$TSLA', '$NVDA')[i % 3]} {t}" for i, t in enumerate(sentiment.texts)],
        sentiment.labels,
    )
    dev = {"sentiment": tagged.subset(range(10))}
    plain = fine_tune({"sentiment": tagged}, dev, trained.label_names, config)
    augmented = fine_tune(
        {"sentiment": tagged}, dev, trained.label_names, with_experimental(config, augment_share=1.0)
    )
    assert not torch.equal(plain.model.heads["sentiment"].weight, augmented.model.heads["sentiment"].weight)
    assert dev["sentiment"].texts == tagged.texts[:10]


def test_training_builds_the_topic_memory_and_reports_dev_as_served(trained) -> None:
    from bert_core import evaluate_sets

    result = trained.result
    assert set(result.memories) == {"topic"}  # MemoryOptions' default: topic only
    assert len(result.memories["topic"]) == len(trained.train["topic"])
    assert result.model_config.training["memory"]["tasks"] == ("topic",)
    as_served = evaluate_sets(
        result.model,
        result.tokenizer,
        trained.dev,
        max_length=trained.config.max_length,
        memories=result.memories,
    )
    assert result.dev_reports == as_served
