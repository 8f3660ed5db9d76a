"""Shared fixtures: a tiny randomly initialised BERT, small learnable data sets, and one
fine-tuned model trained once per session.

Nothing here downloads: the encoder is built from a hand-written vocabulary and a
tiny BertConfig and the hub client is forced offline (tests/unit/conftest.py also
refuses non-local sockets in unit tests).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from bert_core import LabelledData, TrainConfig, TrainResult
from tests.tiny_model import (
    make_mlm_texts,
    make_sentiment_rows,
    make_topic_rows,
    save_trained,
    train_tiny,
    write_csv,
    write_tiny_bert,
    write_tiny_mpnet,
)

# --------------------------------------------------------------------------- session setup


@pytest.fixture(scope="session", autouse=True)
def _light_torch() -> None:
    """Other work shares this machine: one intra-op thread keeps the suite light."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _own_finsent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """FINSENT_HOME defaults to ~/.finsent, the same for every run as this user: each test gets
    its own, so none reads or writes the real one (a test that sets FINSENT_HOME overrides it)."""
    from services.settings import get_settings

    monkeypatch.setenv("FINSENT_HOME", str(tmp_path / ".finsent"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@dataclass
class UnusableOutDirs:
    """An `--out` that no run may write to, per case, with the problem `bert_core.new_dir_problem`
    names (the CLI prefixes "--out "); `untouched()`: nothing in them was changed."""

    cases: dict[str, tuple[Path, str]]
    taken: Path
    a_file: Path

    def untouched(self) -> bool:
        return (self.taken / "keep.txt").read_text() == "kept" and self.a_file.read_text() == "x"


@pytest.fixture()
def unusable_out_dirs(tmp_path: Path) -> UnusableOutDirs:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("kept")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = {
        "not empty": (taken, f"{taken} exists and is not empty; choose a new directory"),
        "a file": (a_file, f"{a_file} is a file; give a directory to create"),
        "under a file": (a_file / "m", f"{a_file / 'm'}: {a_file} is a file, not a directory"),
    }
    return UnusableOutDirs(cases, taken, a_file)


@pytest.fixture()
def python_recursion_limit() -> Iterator[int]:
    """Python's default recursion limit for the test, restored after. The torch-free services
    (ingest, feeds, the alerter) run under it, and how deep a JSON document decodes depends on
    it; but a compiled-model test in the same process (torch's compiler raises the limit)
    would otherwise decide what a nesting test sees."""
    import sys

    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield 1000
    finally:
        sys.setrecursionlimit(before)


REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files as a fresh clone has them (tracked, plus new files not ignored:
    no .venv, models or caches), copied alone into an empty folder, with nothing beside it."""
    import shutil
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    tree = tmp_path_factory.mktemp("clone") / "finsent"
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # a file deleted but not yet committed is still listed
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    return tree


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (hidden 32, 2 layers, 2 heads) with a word-level vocabulary,
    saved as safetensors with its fast tokenizer; loadable with bert_core.load_encoder."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_mpnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MPNet in MPNet's shape (tests/tiny_model.py: write_tiny_mpnet)."""
    return write_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def sentiment_csv(data_dir: Path) -> Path:
    """90 rows (text,label), 30 per class: 0 bearish, 1 bullish, 2 neutral."""
    return write_csv(data_dir / "sentiment.csv", make_sentiment_rows())


@pytest.fixture(scope="session")
def topic_csv(data_dir: Path) -> Path:
    """120 rows (text,label), 6 per topic id 0-19."""
    return write_csv(data_dir / "topic.csv", make_topic_rows())


@pytest.fixture(scope="session")
def mlm_texts() -> list[str]:
    """100 unlabelled headlines from five templates (every word is in the tiny vocabulary)."""
    return make_mlm_texts()


@dataclass
class TrainedModel:
    result: TrainResult
    train: dict[str, LabelledData]
    dev: dict[str, LabelledData]
    label_names: dict[str, list[str]]
    config: TrainConfig


@pytest.fixture(scope="session")
def trained(tiny_bert_dir: Path, sentiment_csv: Path, topic_csv: Path) -> TrainedModel:
    """The tiny BERT fine-tuned once on both tasks (~2 s); shared by many tests: do not modify."""
    return TrainedModel(*train_tiny(tiny_bert_dir, sentiment_csv, topic_csv))


@pytest.fixture(scope="session")
def saved_model_dir(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session model written with save_model_dir (do not modify: copy it first)."""
    return save_trained(tmp_path_factory.mktemp("saved") / "model", trained.result, trained.train)


@pytest.fixture(scope="session")
def model_variant(saved_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: a new model directory derived from `saved_model_dir` (same labels and
    tokenizer, slightly perturbed weights, so its version and sha256 differ), as a retrain
    would make. `shuffle_heads=True` permutes the heads' output rows: a model that scores
    like the parent but labels wrongly (a damaged challenger)."""
    from bert_core import load_model_dir, save_model_dir

    made = 0

    def make(*, parent: Path | None = None, seed: int = 1, shuffle_heads: bool = False) -> Path:
        nonlocal made
        made += 1
        loaded = load_model_dir(parent or saved_model_dir)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in loaded.model.named_parameters():
                if name.startswith("heads."):
                    if shuffle_heads:
                        param.copy_(param[torch.randperm(param.shape[0], generator=generator)])
                    param.add_(torch.randn(param.shape, generator=generator) * 1e-3)
        out = tmp_path_factory.mktemp("variant") / f"model-{made}"
        save_model_dir(
            out,
            loaded.model,
            loaded.tokenizer,
            loaded.config,
            metrics=loaded.metrics,
            data_hash=loaded.manifest.data_hash,
            parent=loaded.manifest.version,
        )
        return out

    return make
