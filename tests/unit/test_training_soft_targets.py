"""Distillation from a soft-targets file instead of teacher models, on a tiny random BERT and
a tiny random MPNet: export a trained teacher's targets, train a student from the file."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bert_core import (
    DataError,
    ModelConfigError,
    TrainConfig,
    compute_soft_targets,
    load_model_dir,
    load_soft_targets,
    save_soft_targets,
    sha256_file,
    train_model,
)
from bert_core.batching import tokenize
from bert_core.inference.passes import predict_proba
from bert_core.recipes import load_task_files, split_sets
from bert_core.soft_targets import text_keys
from bert_core.training import soft_cross_entropy

SEED, DEV = 0, 0.2


def _config(base_model: Path, **changes: Any) -> TrainConfig:
    config = TrainConfig(
        base_model=str(base_model),
        epochs=12,
        batch_size=16,
        learning_rate=3e-3,
        head_learning_rate=3e-3,
        warmup_ratio=0.0,
        freeze_word_embeddings=False,
        patience=100,
        evals_per_epoch=1,
        dropout=0.0,
        progress=False,
        seed=SEED,
        precision="fp32",
        soft_targets_optional=False,
    )
    return dataclasses.replace(config, **changes)


@pytest.fixture(scope="module", params=["bert", "mpnet"])
def teacher(
    request: pytest.FixtureRequest,
    tiny_bert_dir: Path,
    tiny_mpnet_dir: Path,
    sentiment_csv: Path,
    topic_csv: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """A tiny teacher trained on the toy files' training split, and its soft-targets file."""
    encoder = tiny_bert_dir if request.param == "bert" else tiny_mpnet_dir
    paths = {"sentiment": sentiment_csv, "topic": topic_csv}
    root = tmp_path_factory.mktemp(f"teacher-{request.param}")
    train_model(paths, root / "teacher", _config(encoder), dev_fraction=DEV)
    loaded = load_model_dir(root / "teacher")
    targets = compute_soft_targets(
        loaded, paths, seed=SEED, dev_fraction=DEV, command="finsent teacher-targets …", progress=False
    )
    file = save_soft_targets(root / "targets.npz", targets)
    return {"encoder": encoder, "paths": paths, "dir": root / "teacher", "file": file, "root": root}


def _split(paths: dict[str, Path]) -> Any:
    return split_sets(load_task_files(paths), dev_fraction=DEV, seed=SEED)


def test_the_file_holds_both_heads_for_every_training_text_and_no_dev_text(teacher: dict[str, Any]) -> None:
    targets = load_soft_targets(teacher["file"])
    split = _split(teacher["paths"])
    train_texts = {t for d in split.train.values() for t in d.texts}
    dev_only = {t for d in split.dev.values() for t in d.texts} - train_texts
    assert targets.manifest.rows == len(train_texts)
    assert set(targets.keys.tolist()) == set(text_keys(sorted(train_texts)).tolist())
    assert not set(text_keys(sorted(dev_only)).tolist()) & set(targets.keys.tolist())
    assert targets.probs["sentiment"].shape == (len(train_texts), 3)
    assert targets.probs["topic"].shape == (len(train_texts), 20)
    for probs in targets.probs.values():
        np.testing.assert_allclose(probs.astype(np.float32).sum(axis=1), 1.0, atol=5e-3)
    manifest = targets.manifest
    loaded = load_model_dir(teacher["dir"])
    assert manifest.teacher["version"] == loaded.manifest.version
    assert manifest.teacher["data_hash"] == manifest.train_hash == loaded.manifest.data_hash
    assert manifest.encoder == loaded.config.base_model
    assert manifest.split == {"seed": SEED, "dev_fraction": DEV}
    for task, path in teacher["paths"].items():
        assert manifest.data[task]["sha256"] == sha256_file(path)
        assert manifest.labels[task] == loaded.config.labels[task]


def _distill_loss(model_dir: Path, texts: list[str], targets: np.ndarray) -> float:
    """The student's topic soft cross-entropy against the teacher's targets on `texts`."""
    loaded = load_model_dir(model_dir)
    tokens = tokenize(loaded.tokenizer, texts, 64)
    probs = predict_proba(loaded.model, tokens, int(loaded.tokenizer.pad_token_id or 0), tasks=["topic"])
    logits = torch.log(torch.from_numpy(probs["topic"]).clamp_min(1e-9))
    return float(soft_cross_entropy(logits, torch.from_numpy(targets)))


def test_a_student_distils_from_the_file_and_saves_and_loads(teacher: dict[str, Any], tmp_path: Path) -> None:
    base = _config(teacher["encoder"], epochs=6, init_seed=1)
    plain, _ = train_model(teacher["paths"], tmp_path / "plain", base, dev_fraction=DEV)
    taught, manifest = train_model(
        teacher["paths"],
        tmp_path / "taught",
        dataclasses.replace(base, soft_targets=str(teacher["file"])),
        dev_fraction=DEV,
    )
    record = taught.model_config.training["teacher"]
    assert record["versions"] == [load_model_dir(teacher["dir"]).manifest.version]
    assert record["soft_targets"]["sha256"] == sha256_file(teacher["file"])
    assert plain.model_config.training["teacher"] is None
    assert "soft_targets" not in taught.model_config.training  # recorded under "teacher" only
    # Sentiment texts carry no topic label: only the file teaches their topics.
    split = _split(teacher["paths"])
    texts = split.train["sentiment"].texts
    from bert_core import teacher_targets_from

    soft = teacher_targets_from(load_soft_targets(teacher["file"]), split.train, ["sentiment", "topic"])
    wanted = soft["sentiment"]["topic"]
    taught_loss = _distill_loss(tmp_path / "taught", texts, wanted)
    assert taught_loss < _distill_loss(tmp_path / "plain", texts, wanted)
    history = [h["loss"] for h in taught.history]
    assert history[-1] < history[0]  # the training loss, distillation term included, falls
    # the saved student is the trained one
    loaded = load_model_dir(tmp_path / "taught")
    assert loaded.manifest.version == manifest.version
    tokens = tokenize(loaded.tokenizer, texts[:8], 64)
    pad = int(loaded.tokenizer.pad_token_id or 0)
    saved = predict_proba(loaded.model, tokens, pad, tasks=["sentiment", "topic"])
    live = predict_proba(taught.model, tokens, pad, tasks=["sentiment", "topic"])
    for head in saved:
        np.testing.assert_allclose(saved[head], live[head], atol=1e-5)


def test_a_file_for_another_split_is_one_clear_error(teacher: dict[str, Any], tmp_path: Path) -> None:
    config = _config(teacher["encoder"], epochs=1, soft_targets=str(teacher["file"]))
    message = r"do not match this run's data: .*split seed 0 and dev fraction 0\.2"
    with pytest.raises(DataError, match=message) as e:
        train_model(teacher["paths"], tmp_path / "m", config, dev_fraction=0.3)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "m").exists()


def test_a_file_for_another_data_file_names_it(teacher: dict[str, Any], tmp_path: Path) -> None:
    other = tmp_path / "sentiment.csv"
    other.write_text(teacher["paths"]["sentiment"].read_text() + "acme rally gains,1\n")
    config = _config(teacher["encoder"], epochs=1, soft_targets=str(teacher["file"]))
    with pytest.raises(DataError, match=r"computed on another sentiment file \(sentiment\.csv"):
        train_model({**teacher["paths"], "sentiment": other}, tmp_path / "m", config, dev_fraction=DEV)


def test_a_file_missing_rows_is_an_error_not_a_partial_distillation(
    teacher: dict[str, Any], tmp_path: Path
) -> None:
    targets = load_soft_targets(teacher["file"])
    keep = np.arange(len(targets.keys)) % 10 != 0
    cut = dataclasses.replace(
        targets,
        manifest=dataclasses.replace(targets.manifest, rows=int(keep.sum())),
        keys=targets.keys[keep],
        probs={h: p[keep] for h, p in targets.probs.items()},
    )
    file = save_soft_targets(tmp_path / "cut.npz", cut)
    config = _config(teacher["encoder"], epochs=1, soft_targets=str(file))
    with pytest.raises(DataError, match=r"cut\.npz: no soft targets for \d+ of \d+ \w+ training texts"):
        train_model(teacher["paths"], tmp_path / "m", config, dev_fraction=DEV)


def test_the_shipped_file_is_used_only_where_it_matches(
    teacher: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`soft_targets_optional` (the file beside the seed data): absent or for other data, the
    run trains without distillation and says why; a refused file as well."""
    base = _config(teacher["encoder"], epochs=1, soft_targets_optional=True)
    absent = dataclasses.replace(base, soft_targets=str(tmp_path / "none.npz"))
    result, _ = train_model(teacher["paths"], tmp_path / "a", absent, dev_fraction=DEV)
    assert result.model_config.training["teacher"] is None
    other_split = dataclasses.replace(base, soft_targets=str(teacher["file"]))
    with caplog.at_level(logging.WARNING, logger="bert_core.recipes"):
        result, _ = train_model(teacher["paths"], tmp_path / "b", other_split, dev_fraction=0.3)
    assert result.model_config.training["teacher"] is None
    assert "do not match this run's data" in caplog.text
    assert "training without distillation" in caplog.text
    matching, _ = train_model(teacher["paths"], tmp_path / "c", other_split, dev_fraction=DEV)
    assert matching.model_config.training["teacher"]["soft_targets"]["file"] == "targets.npz"


def test_a_teacher_from_another_split_cannot_make_a_file(teacher: dict[str, Any]) -> None:
    loaded = load_model_dir(teacher["dir"])
    with pytest.raises(ModelConfigError, match="trained on other rows than this training split"):
        compute_soft_targets(
            loaded, teacher["paths"], seed=SEED, dev_fraction=0.3, command="x", progress=False
        )


def test_teacher_models_and_a_file_are_not_mixed(teacher: dict[str, Any], tmp_path: Path) -> None:
    """With teachers given, a shipped (optional) file is ignored: the teachers' targets are used."""
    config = _config(
        teacher["encoder"],
        epochs=1,
        teachers=(str(teacher["dir"]),),
        soft_targets=str(teacher["file"]),
        soft_targets_optional=True,
    )
    result, _ = train_model(teacher["paths"], tmp_path / "m", config, dev_fraction=DEV)
    assert "soft_targets" not in result.model_config.training["teacher"]
    explicit = dataclasses.replace(config, soft_targets_optional=False)
    with pytest.raises(ModelConfigError, match="teacher models or from a soft-targets file, not both"):
        train_model(teacher["paths"], tmp_path / "n", explicit, dev_fraction=DEV)
