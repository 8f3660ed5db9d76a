"""`finsent train | evaluate | predict` against the tiny encoder.

Successful runs use typer's CliRunner in-process (fast); the library-error path runs
the real entry point `python -m services` in a subprocess, because `main()` is what
turns library errors into one line on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bert_core import DEFAULT_LABELS, Predictor, read_labelled, verify_model_dir
from bert_core.errors import DataError
from bert_core.labels import LabelSet
from services.cli import app
from services.settings import get_settings

REPO = Path(__file__).resolve().parents[2]

# FINSENT_* variables of the caller must not leak into the tests; one torch thread.
CLI_ENV: dict[str, str | None] = {
    **{k: None for k in os.environ if k.startswith("FINSENT_")},
    "FINSENT_TORCH_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")}
    env.update({k: v for k, v in CLI_ENV.items() if v is not None})
    return env


def run_module(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_subprocess_env(),
        timeout=300,
    )


def invoke(args: list[str], stdin: str | None = None) -> Any:
    """Run the typer app in-process with a fresh settings cache."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, input=stdin, env=CLI_ENV)
    finally:
        get_settings.cache_clear()


def _ok(result: Any) -> None:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Settings read a .env file from the working directory.
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="module")
def cli_trained(
    tiny_bert_dir: Path, sentiment_csv: Path, topic_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("cli") / "model"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(out.parent)
        result = invoke(
            [
                "train",
                "--sentiment-data",
                str(sentiment_csv),
                "--topic-data",
                str(topic_csv),
                "--out",
                str(out),
                "--base-model",
                str(tiny_bert_dir),
                "--epochs",
                "1",
            ]
        )
    return {"result": result, "out": out}


def test_train_creates_a_verified_model_dir(cli_trained: dict[str, Any], sentiment_csv: Path) -> None:
    result, out = cli_trained["result"], cli_trained["out"]
    _ok(result)
    manifest = verify_model_dir(out)
    assert f"saved model {manifest.version} to {out}" in result.stdout
    assert "sentiment (dev)" in result.stdout
    assert "topic (dev)" in result.stdout
    cfg = json.loads((out / "finsent.json").read_text())
    assert cfg["training"]["epochs"] == 1
    assert cfg["training"]["data_files"]["sentiment"] == str(sentiment_csv)
    assert cfg["training"]["dev_fraction"] == 0.1
    assert cfg["labels"]["sentiment"] == list(DEFAULT_LABELS["sentiment"])


def test_train_takes_the_augmentation_and_fgm_options(
    tmp_path: Path, sentiment_csv: Path, tiny_bert_dir: Path
) -> None:
    out = tmp_path / "m"
    args = ["--augment-share", "0.3", "--fgm-epsilon", "0.5", "--epochs", "1"]
    result = invoke(
        [
            "train",
            "--sentiment-data",
            str(sentiment_csv),
            "--out",
            str(out),
            "--base-model",
            str(tiny_bert_dir),
            *args,
        ]
    )
    _ok(result)
    training = json.loads((out / "finsent.json").read_text())["training"]
    assert (training["augment_share"], training["fgm_epsilon"]) == (0.3, 0.5)


def test_train_refuses_an_existing_out_dir(
    cli_trained: dict[str, Any], sentiment_csv: Path, tiny_bert_dir: Path
) -> None:
    out = cli_trained["out"]
    version = verify_model_dir(out).version
    result = invoke(
        [
            "train",
            "--sentiment-data",
            str(sentiment_csv),
            "--out",
            str(out),
            "--base-model",
            str(tiny_bert_dir),
            "--epochs",
            "1",
        ]
    )
    # refused before the training, not after it
    assert result.exit_code == 2
    assert result.stderr == (
        f"finsent: error: --out {out} exists and is not empty; choose a new directory or pass "
        "--overwrite to replace it\n"
    )
    assert verify_model_dir(out).version == version


def test_train_without_files_uses_the_seed_data_and_says_when_it_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "gone" / "sentiment.csv"
    monkeypatch.setenv("FINSENT_SENTIMENT_DATA", str(missing))
    monkeypatch.setenv("FINSENT_TOPIC_DATA", str(tmp_path / "gone" / "topic.csv"))
    result = invoke(["train", "--out", str(tmp_path / "m")])
    # checked before torch loads and before anything is said: one line naming the setting, exit 2
    assert result.exit_code == 2
    assert result.stderr == f"finsent: error: {missing}: no such seed file (FINSENT_SENTIMENT_DATA)\n"
    assert not (tmp_path / "m").exists()


def test_an_encoder_without_its_packages_is_the_only_thing_train_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`finsent train --encoder mpnet-base` without the encoder's packages: its one-line error
    comes before any progress line (the seed data, the assembly), so it is all the user sees."""
    import importlib
    import importlib.metadata

    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    for name in [k for k in os.environ if k.startswith("FINSENT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / "home"))  # nothing assembled there
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)  # no slice is installed
    cli_app = importlib.import_module("services.cli.app")  # the module, not the Typer object
    monkeypatch.setattr(cli_app, "configure_logging", lambda *args: None)  # leave pytest's logging alone
    monkeypatch.setattr(
        sys, "argv", ["finsent", "train", "--encoder", "mpnet-base", "--out", str(tmp_path / "m")]
    )
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            cli_app.main()
    finally:
        get_settings.cache_clear()
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("finsent: error: encoder mpnet-base needs 5 more package(s)")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--own-task-weight", "0.5", "--no-shipped-soft-targets"],
            "--own-task-weight needs a --teacher model or soft targets",
        ),
        (
            ["--own-task-weight", "sentiment=0.5", "--no-shipped-soft-targets"],
            "--own-task-weight needs a --teacher model or soft targets",
        ),
        (
            ["--own-task-weight", "1.5"],
            "--own-task-weight: own-task weight '1.5' is outside 0..1",
        ),
        (
            ["--own-task-weight", "sentimnet=0.5"],
            "--own-task-weight: unknown task 'sentimnet' in own-task weight 'sentimnet=0.5': "
            "tasks are topic, sentiment",
        ),
        (["--teacher", "T", "--soft-targets", "F.npz"], "give --teacher or --soft-targets, not both"),
        # --precision is a choice now: tests/unit/test_cli_usage.py checks its one-line error.
    ],
)
def test_train_refuses_bad_distillation_and_precision_options(
    tmp_path: Path, sentiment_csv: Path, args: list[str], message: str
) -> None:
    result = invoke(["train", "--sentiment-data", str(sentiment_csv), "--out", str(tmp_path / "m"), *args])
    assert result.exit_code == 2
    assert f"finsent: error: {message}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_the_shipped_soft_targets_are_the_default_unless_a_file_teachers_or_the_switch_say_not() -> None:
    from bert_core import packaged_soft_targets, soft_targets_choice

    shipped = str(packaged_soft_targets())
    assert shipped.endswith("bert_core/seed_data/soft_targets.npz")
    assert soft_targets_choice(None, shipped=True, teachers=False) == (shipped, True)  # used if it matches
    assert soft_targets_choice(Path("F.npz"), shipped=True, teachers=False) == ("F.npz", False)  # must match
    assert soft_targets_choice(None, shipped=True, teachers=True) == (None, False)
    assert soft_targets_choice(None, shipped=False, teachers=False) == (None, False)


def test_evaluate_json(saved_model_dir: Path, sentiment_csv: Path, topic_csv: Path) -> None:
    result = invoke(
        [
            "evaluate",
            "--model",
            str(saved_model_dir),
            "--sentiment-data",
            str(sentiment_csv),
            "--topic-data",
            str(topic_csv),
            "--json",
            "--precision",
            "fp32",
        ]
    )
    _ok(result)
    assert len(result.stdout.strip().splitlines()) == 1
    report = json.loads(result.stdout)
    assert report["split"] == "all"
    assert report["model_version"] == verify_model_dir(saved_model_dir).version
    assert report["sentiment"]["n"] == 90
    assert report["topic"]["n"] == 120
    for task in ("sentiment", "topic"):
        for metric in ("accuracy", "macro_f1"):
            assert 0.0 <= report[task][metric] <= 1.0
    # The numbers are the Predictor's own accuracy on the same rows.
    predictor = Predictor.load(saved_model_dir, precision="fp32")
    for task, path in (("sentiment", sentiment_csv), ("topic", topic_csv)):
        data = read_labelled(path, LabelSet(task, DEFAULT_LABELS[task]))
        preds = predictor.predict(data.texts)
        names = list(DEFAULT_LABELS[task])
        hits = sum(names.index(getattr(p, task)) == y for p, y in zip(preds, data.labels, strict=True))
        assert report[task]["accuracy"] == pytest.approx(hits / len(data))
    # The session model learned the keyword rules: far above chance on its own data.
    assert report["sentiment"]["macro_f1"] > 0.8
    assert report["topic"]["macro_f1"] > 0.5


def test_evaluate_table_output(saved_model_dir: Path, sentiment_csv: Path) -> None:
    result = invoke(["evaluate", "--model", str(saved_model_dir), "--sentiment-data", str(sentiment_csv)])
    _ok(result)
    assert "== sentiment: n=90" in result.stdout
    for name in DEFAULT_LABELS["sentiment"]:
        assert name in result.stdout


def test_evaluate_dev_split_of_recorded_files(cli_trained: dict[str, Any]) -> None:
    # With no data files, the model's own dev split of its training files is used.
    result = invoke(["evaluate", "--model", str(cli_trained["out"]), "--json", "--precision", "fp32"])
    _ok(result)
    report = json.loads(result.stdout)
    assert report["split"] == "dev"
    # dev_fraction 0.1: 3 of 30 per sentiment class, 1 of 6 per topic.
    assert report["sentiment"]["n"] == 9
    assert report["topic"]["n"] == 20


def test_evaluate_compares_several_models(
    saved_model_dir: Path, model_variant: Any, sentiment_csv: Path
) -> None:
    # The session model against a damaged copy (heads permuted): one report each on the same
    # texts, and one for the mean of their probabilities.
    damaged = model_variant(shuffle_heads=True)
    args = ["--sentiment-data", str(sentiment_csv), "--precision", "fp32"]
    result = invoke(["evaluate", "--model", str(saved_model_dir), "--model", str(damaged), *args, "--json"])
    _ok(result)
    report = json.loads(result.stdout)
    assert [m["model"] for m in report["models"]] == [str(saved_model_dir), str(damaged)]
    alone = json.loads(invoke(["evaluate", "--model", str(saved_model_dir), *args, "--json"]).stdout)
    first, second = report["models"]
    assert first["model_version"] == verify_model_dir(saved_model_dir).version
    assert first["sentiment"]["accuracy"] == alone["sentiment"]["accuracy"]
    assert second["sentiment"]["accuracy"] < first["sentiment"]["accuracy"]
    assert report["mean"]["sentiment"]["n"] == 90
    assert "topic" not in report["mean"]
    table = invoke(["evaluate", "--model", str(saved_model_dir), "--model", str(damaged), *args])
    _ok(table)
    assert "mean of 2" in table.stdout
    assert f"{alone['sentiment']['accuracy']:8.4f}" in table.stdout


def test_evaluate_refuses_models_trained_on_other_rows(cli_trained: dict[str, Any], tmp_path: Path) -> None:
    # On a dev split, a model trained on other rows may have trained on these dev texts.
    from bert_core import load_model_dir, save_model_dir

    loaded = load_model_dir(cli_trained["out"])
    other = tmp_path / "other"
    save_model_dir(other, loaded.model, loaded.tokenizer, loaded.config, metrics={}, data_hash="0" * 64)
    result = invoke(["evaluate", "--model", str(cli_trained["out"]), "--model", str(other)])
    assert result.exit_code != 0
    assert "trained on other rows" in result.output


def test_predict_arguments(saved_model_dir: Path) -> None:
    texts = ["acme shares plunge after earnings misses", "globex stock surges as profit beats"]
    result = invoke(["predict", "--model", str(saved_model_dir), "--precision", "fp32", *texts])
    _ok(result)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    rows = [json.loads(line) for line in lines]
    assert [r["text"] for r in rows] == texts
    expected = Predictor.load(saved_model_dir, precision="fp32").predict(texts)
    for row, pred in zip(rows, expected, strict=True):
        assert row["sentiment"] == pred.sentiment
        assert row["topic"] == pred.topic
        assert row["sentiment_probs"] == pytest.approx(pred.sentiment_probs, abs=1e-6)
        assert row["model_version"] == pred.model_version
    assert [r["sentiment"] for r in rows] == ["bearish", "bullish"]


def test_predict_without_model() -> None:
    result = invoke(["predict", "some text"])
    assert result.exit_code == 2
    assert "give --model DIR" in result.stderr


def test_predict_rejects_a_stdin_object_without_text(saved_model_dir: Path) -> None:
    stdin = json.dumps({"text": "fed holds rates"}) + "\n" + json.dumps({"title": "no text here"}) + "\n"
    result = invoke(["predict", "--model", str(saved_model_dir)], stdin)
    assert result.exit_code == 2
    assert 'stdin line 2: JSON object needs a string "text" or "headline" field' in result.stderr
    assert result.stdout == ""


def test_predict_jsonl_on_stdin(saved_model_dir: Path) -> None:
    stdin = (
        "\n".join(
            [
                json.dumps({"id": 7, "text": "acme shares plunge after earnings misses"}),
                json.dumps("globex stock surges as profit beats"),
                "initech announces meeting",
                "",
                json.dumps({"headline": "oil crude prices rise", "source": "wire"}),
            ]
        )
        + "\n"
    )
    result = invoke(["predict", "--model", str(saved_model_dir), "--precision", "fp32"], stdin)
    _ok(result)
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["text"] for r in rows] == [
        "acme shares plunge after earnings misses",
        "globex stock surges as profit beats",
        "initech announces meeting",
        "oil crude prices rise",
    ]
    assert rows[0]["id"] == 7
    assert "id" not in rows[1]
    assert "source" not in rows[3]
    assert [r["sentiment"] for r in rows[:3]] == ["bearish", "bullish", "neutral"]
    for row in rows:
        assert sum(row["sentiment_probs"].values()) == pytest.approx(1.0, abs=1e-5)


def test_missing_data_file_is_one_line_error(tiny_bert_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file.csv"
    proc = run_module(
        [
            "train",
            "--sentiment-data",
            str(missing),
            "--out",
            str(tmp_path / "m"),
            "--base-model",
            str(tiny_bert_dir),
            "--epochs",
            "1",
        ],
        tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("finsent: error:")
    assert str(missing) in lines[0]
    assert "no such file" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "m").exists()


def test_own_task_weight_on_other_files_needs_the_shipped_targets_to_match(
    tmp_path: Path, sentiment_csv: Path
) -> None:
    """--own-task-weight with the shipped file asks for it by name: on files it was not made
    for, the run stops with the reason instead of training without a teacher."""
    result = invoke(
        [
            "train",
            "--sentiment-data",
            str(sentiment_csv),
            "--out",
            str(tmp_path / "m"),
            "--own-task-weight",
            "0.5",
        ]
    )
    assert isinstance(result.exception, DataError)
    assert "the soft targets do not match this run's data" in str(result.exception)
    assert not (tmp_path / "m").exists()


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command gets as far as choosing an encoder or loading a model: its
    argument checks must come first (no torch import, no training)."""
    from bert_core.inference.predictor import Predictor as RealPredictor

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr("services.cli.common.chosen_encoder", refuse)
    monkeypatch.setattr(RealPredictor, "load", refuse)


@pytest.mark.parametrize("command", [["train"], ["pretrain-mlm"]])
@pytest.mark.parametrize("case", ["not empty", "a file", "under a file"])
def test_out_is_checked_before_any_model_loads(
    sentiment_csv: Path, no_model_loads: None, unusable_out_dirs, command: list[str], case: str
) -> None:
    out, problem = unusable_out_dirs.cases[case]
    message = f"--out {problem}"
    data = ["--sentiment-data"] if command == ["train"] else ["--text-data"]
    result = invoke([*command, *data, str(sentiment_csv), "--out", str(out)])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"finsent: error: {message}")
    offers_overwrite = command == ["train"] and case == "not empty"  # pretrain-mlm has no --overwrite
    assert line.endswith(" or pass --overwrite to replace it") == offers_overwrite
    assert unusable_out_dirs.untouched()


def test_train_dev_fraction_is_bounded_by_the_option(tmp_path: Path, no_model_loads: None) -> None:
    for value in ("0", "1"):  # in process: the bound holds before any model loads
        result = invoke(["train", "--out", str(tmp_path / "m"), "--dev-fraction", value])
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--dev-fraction'" in result.stderr, result.stderr
    proc = run_module(["train", "--out", str(tmp_path / "m"), "--dev-fraction", "5"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(
        "finsent: error: Invalid value for '--dev-fraction': Input should be less than or equal to 0.99"
    )
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("command", [["predict", "some text"], ["evaluate"]])
def test_a_folder_without_a_model_fails_before_torch_loads(
    tmp_path: Path, no_model_loads: None, command: list[str]
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    result = invoke([*command, "--model", str(folder)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"finsent: error: {folder}: not a finsent model directory (no manifest.json)\n"

    (folder / "manifest.json").write_text('{"version": "v1"}')
    result = invoke([*command, "--model", str(folder)])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"finsent: error: {folder / 'manifest.json'}: not a finsent manifest "
        "(missing keys: created, data_hash, parent, files)\n"
    )
