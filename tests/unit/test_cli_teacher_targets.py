"""`finsent teacher-targets` and `finsent train --soft-targets` against the tiny BERT: a
trained teacher's targets into a file, a student trained from it, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bert_core import load_soft_targets, save_soft_targets, sha256_file, verify_model_dir
from tests.unit.test_cli_train import _ok, invoke, run_module

TEACHER_SPLIT = ["--seed", "0", "--dev-fraction", "0.2"]  # the split `saved_model_dir` trained on


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # settings read a .env file from the working directory


def _data(sentiment_csv: Path, topic_csv: Path) -> list[str]:
    return ["--sentiment-data", str(sentiment_csv), "--topic-data", str(topic_csv)]


@pytest.fixture(scope="module")
def targets_file(
    saved_model_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("targets") / "targets.npz"
    args = ["teacher-targets", "--teacher", str(saved_model_dir), "--out", str(out)]
    result = invoke([*args, *_data(sentiment_csv, topic_csv), *TEACHER_SPLIT, "--precision", "fp32"])
    return {"result": result, "out": out}


def test_teacher_targets_writes_a_file_with_the_command_that_remakes_it(
    targets_file: dict[str, Any], saved_model_dir: Path, sentiment_csv: Path
) -> None:
    result, out = targets_file["result"], targets_file["out"]
    _ok(result)
    manifest = load_soft_targets(out).manifest
    version = verify_model_dir(saved_model_dir).version
    wrote = f"wrote soft targets of teacher {version} for {manifest.rows} training texts to {out}"
    assert wrote in result.stdout
    assert "teacher targets" in result.stderr  # the progress bar
    command = shlex.split(manifest.command)
    assert command[:2] == ["finsent", "teacher-targets"]
    assert command[command.index("--teacher") + 1] == str(saved_model_dir)
    assert command[command.index("--sentiment-data") + 1] == str(sentiment_csv)
    assert command[command.index("--seed") + 1] == "0"
    assert command[command.index("--dev-fraction") + 1] == "0.2"
    assert manifest.data["sentiment"]["sha256"] == sha256_file(sentiment_csv)


def test_teacher_targets_help_names_its_options() -> None:
    result = invoke(["teacher-targets", "--help"])
    _ok(result)
    for option in ("--teacher", "--out", "--seed", "--precision", "--overwrite"):
        assert option in result.stdout


def test_an_existing_file_needs_overwrite(targets_file: dict[str, Any], saved_model_dir: Path) -> None:
    out = targets_file["out"]
    result = invoke(["teacher-targets", "--teacher", str(saved_model_dir), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"finsent: error: {out} exists; pass --overwrite to replace it"


def test_a_teacher_of_another_split_is_one_line(
    saved_model_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    args = ["teacher-targets", "--teacher", str(saved_model_dir), "--out", str(tmp_path / "t.npz")]
    proc = run_module([*args, *_data(sentiment_csv, topic_csv), "--seed", "0"], tmp_path)  # dev 0.1
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("finsent: error: ")
    assert "trained on other rows than this training split" in lines[0]
    assert not (tmp_path / "t.npz").exists()


def test_train_distils_from_the_file(
    targets_file: dict[str, Any], tiny_bert_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "student"
    base = ["train", "--out", str(out), "--base-model", str(tiny_bert_dir), "--epochs", "1"]
    soft = ["--soft-targets", str(targets_file["out"])]
    result = invoke([*base, *_data(sentiment_csv, topic_csv), *TEACHER_SPLIT, *soft])
    _ok(result)
    verify_model_dir(out)
    teacher = json.loads((out / "finsent.json").read_text())["training"]["teacher"]
    assert teacher["soft_targets"]["sha256"] == sha256_file(targets_file["out"])


def test_train_with_a_file_of_another_split_is_one_line(
    targets_file: dict[str, Any], tiny_bert_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    base = ["train", "--out", str(tmp_path / "m"), "--base-model", str(tiny_bert_dir), "--epochs", "1"]
    soft = ["--soft-targets", str(targets_file["out"])]
    proc = run_module([*base, *_data(sentiment_csv, topic_csv), *soft], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "the soft targets do not match this run's data: it was computed with split seed 0" in lines[0]
    assert not (tmp_path / "m").exists()


def test_an_ensemble_averages_a_teacher_with_files_scored_before(
    targets_file: dict[str, Any], saved_model_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    scored = load_soft_targets(targets_file["out"])
    flat = {head: np.full_like(p, 1.0 / p.shape[1]) for head, p in scored.probs.items()}
    uniform = save_soft_targets(tmp_path / "uniform.npz", dataclasses.replace(scored, probs=flat))
    out = tmp_path / "ensemble.npz"
    members = ["--teacher", str(saved_model_dir), "--targets", str(uniform)]
    args = ["teacher-targets", *members, "--out", str(out), *_data(sentiment_csv, topic_csv)]
    result = invoke([*args, *TEACHER_SPLIT, "--precision", "fp32"])
    _ok(result)
    assert "wrote soft targets of ensemble" in result.stdout
    mean = load_soft_targets(out)
    for head, p in scored.probs.items():  # the same teacher again, averaged with uniform rows
        expected = (p.astype(np.float32) + flat[head].astype(np.float32)) / 2
        np.testing.assert_allclose(mean.probs[head].astype(np.float32), expected, atol=2e-3)
    entries = mean.manifest.teacher["ensemble"]
    assert len(entries) == 2
    alone = shlex.split(entries[1]["command"])  # the teacher's own command, scored alone
    assert "--targets" not in alone and alone[alone.index("--teacher") + 1] == str(saved_model_dir)
    command = shlex.split(mean.manifest.command)
    assert command[command.index("--targets") + 1] == str(uniform)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([], "give --teacher DIR (a trained teacher model), or --targets FILE twice or more"),
        (["--targets", "{file}"], "alone is a soft-targets file already: add a --teacher"),
    ],
)
def test_an_ensemble_without_enough_members_is_one_line(
    targets_file: dict[str, Any], members: list[str], message: str, tmp_path: Path
) -> None:
    given = [m.format(file=targets_file["out"]) for m in members]
    result = invoke(["teacher-targets", *given, "--out", str(tmp_path / "e.npz")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"finsent: error: {result.stderr.strip()[16:]}"]
    assert message in result.stderr


def test_a_file_of_another_split_cannot_join_the_ensemble(
    targets_file: dict[str, Any], sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    members = ["--targets", str(targets_file["out"]), "--targets", str(targets_file["out"])]
    args = ["teacher-targets", *members, "--out", str(tmp_path / "e.npz"), *_data(sentiment_csv, topic_csv)]
    proc = run_module([*args, "--seed", "1"], tmp_path)  # the files' split: seed 0, dev fraction 0.2
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot join the ensemble: it was computed with split seed 0 and dev fraction 0.2; " in lines[0]
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("topic", "--head-members 'topic': give HEAD=N[,N], members numbered from 1 (e.g. topic=1,2)"),
        ("topic=a", "--head-members 'topic=a': give HEAD=N[,N]"),
        ("mood=1", "no head 'mood' to choose members for (heads: topic, sentiment)"),
        ("topic=3", "topic: members are numbered 1 to 2, not [3]"),
    ],
)
def test_a_wrong_head_members_value_is_one_line_before_any_teacher_runs(
    targets_file: dict[str, Any],
    sentiment_csv: Path,
    topic_csv: Path,
    tmp_path: Path,
    value: str,
    message: str,
) -> None:
    members = ["--targets", str(targets_file["out"]), "--targets", str(targets_file["out"])]
    args = ["teacher-targets", *members, "--head-members", value, "--out", str(tmp_path / "e.npz")]
    proc = run_module([*args, *_data(sentiment_csv, topic_csv)], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert not (tmp_path / "e.npz").exists()


def test_head_members_pick_which_files_teach_each_head(
    targets_file: dict[str, Any], sentiment_csv: Path, topic_csv: Path, tmp_path: Path
) -> None:
    scored = load_soft_targets(targets_file["out"])
    flat = {head: np.full_like(p, 1.0 / p.shape[1]) for head, p in scored.probs.items()}
    uniform = save_soft_targets(tmp_path / "uniform.npz", dataclasses.replace(scored, probs=flat))
    out = tmp_path / "mixed.npz"
    members = ["--targets", str(targets_file["out"]), "--targets", str(uniform), "--head-members", "topic=2"]
    result = invoke(["teacher-targets", *members, "--out", str(out), *_data(sentiment_csv, topic_csv)])
    _ok(result)
    mixed = load_soft_targets(out)
    np.testing.assert_array_equal(mixed.probs["topic"], flat["topic"])
    mean = (scored.probs["sentiment"].astype(np.float32) + flat["sentiment"].astype(np.float32)) / 2
    np.testing.assert_allclose(mixed.probs["sentiment"].astype(np.float32), mean, atol=2e-3)
    command = shlex.split(mixed.manifest.command)
    assert command[command.index("--head-members") + 1] == "topic=2"
