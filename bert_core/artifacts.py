"""Versioned model directories: safetensors weights, config, tokenizer, metrics, card, manifest.

A model directory is the unit the registry stores, the workers load and an auditor
inspects. The manifest pins the sha256 of every file, so a tampered or half-copied
directory is refused at load time instead of silently serving wrong predictions.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from bert_core.errors import ModelIntegrityError
from bert_core.hashing import sha256_file
from bert_core.manifest import (
    CONFIG_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    Manifest,
    VerifiedModelDir,
    read_manifest,
    verify_model_dir,
)
from bert_core.memory import LexicalMemory, memory_files
from bert_core.model import MultiTaskClassifier, Pooling
from bert_core.out_dir import new_dir_problem

FORMAT_VERSION = 1
CARD_FILE = "README.md"


@dataclass
class ModelConfig:
    """What is needed to rebuild and serve the classifier, saved as finsent.json."""

    labels: dict[str, list[str]]
    base_model: str
    max_length: int
    pooling: Pooling
    dropout: float = 0.1
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


@dataclass
class LoadedModel:
    model: MultiTaskClassifier
    tokenizer: PreTrainedTokenizerBase
    config: ModelConfig
    manifest: Manifest
    path: Path
    metrics: dict[str, Any]
    # task -> the lexical memory mixed into its head's probabilities (bert_core.memory)
    memories: dict[str, LexicalMemory] = field(default_factory=dict)


def _model_card(
    config: ModelConfig, manifest: Manifest, metrics: dict[str, Any], memories: Mapping[str, LexicalMemory]
) -> str:
    lines = [
        f"# finsent model {manifest.version}",
        "",
        "Multi-task BERT classifier for financial news headlines: one encoder pass, a topic "
        f"head ({len(config.labels.get('topic', []))} classes) and a sentiment head "
        f"({', '.join(config.labels.get('sentiment', []))}).",
        "",
        "## Model",
        f"- base encoder: `{config.base_model}`",
        f"- pooling: {config.pooling}; max length: {config.max_length} tokens",
        *(
            f"- {task} memory: {len(memory):,} labelled training texts, mixed into the head's "
            f"probabilities with weight {1 - memory.options.head_weight:g} (bert_core.memory)"
            for task, memory in memories.items()
        ),
        f"- parent version: {manifest.parent or 'none'}",
        f"- created: {manifest.created}",
        "",
        "## Training data",
        f"- data hash (sha256 over normalised rows): `{manifest.data_hash}`",
    ]
    for key, value in sorted(config.training.items()):
        lines.append(f"- {key}: {value}")
    lines += ["", "## Metrics (dev split, never trained on)"]
    for task, rep in metrics.get("dev", {}).items():
        lines.append(
            f"- {task}: accuracy {rep['accuracy']:.4f}, macro-F1 {rep['macro_f1']:.4f}, "
            f"ECE {rep.get('ece', float('nan')):.4f}, n={rep['n']}"
        )
    lines += [
        "",
        "## Intended use",
        "Labelling English financial news headlines and tweets for monitoring dashboards and",
        "negative-news alerts, with an analyst in the loop.",
        "",
        "## Limits",
        "- Trained on short English headlines/tweets; long articles are truncated to the max length.",
        "- Sentiment is the headline's market tone, not a trading signal or advice.",
        "- Classes are imbalanced; check per-class recall in metrics.json before relying on a class.",
        "- Language and events drift: retrain on fresh analyst labels and compare on a frozen holdout.",
        "",
    ]
    return "\n".join(lines)


def save_model_dir(
    out_dir: str | Path,
    model: MultiTaskClassifier,
    tokenizer: PreTrainedTokenizerBase,
    config: ModelConfig,
    *,
    metrics: dict[str, Any],
    data_hash: str,
    parent: str | None = None,
    overwrite: bool = False,
    memories: Mapping[str, LexicalMemory] | None = None,
) -> Manifest:
    """Write a complete model directory atomically (temp dir, then rename), with the lexical
    memories beside its heads (`memory-<task>.*`, listed in the manifest like every file)."""
    out = Path(out_dir)
    problem = new_dir_problem(out, overwrite=overwrite)
    if problem is not None:
        raise ModelIntegrityError(problem)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        model.encoder.config.to_json_file(str(tmp / "config.json"))
        tokenizer.save_pretrained(str(tmp))
        (tmp / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2))
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
        for task, memory in (memories or {}).items():
            memory.save(tmp, task)
        created = datetime.now(UTC)
        weights_sha = sha256_file(tmp / WEIGHTS_FILE)
        manifest = Manifest(
            version=f"{created:%Y%m%d-%H%M%S}-{weights_sha[:8]}",
            created=created.isoformat(timespec="seconds"),
            data_hash=data_hash,
            parent=parent,
            files={},
        )
        (tmp / CARD_FILE).write_text(_model_card(config, manifest, metrics, memories or {}))
        manifest.files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST_FILE).write_text(json.dumps(asdict(manifest), indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def load_model_dir(source: str | Path | VerifiedModelDir, *, verify: bool = True) -> LoadedModel:
    """Rebuild the classifier from a model directory; weights only from safetensors. A
    `VerifiedModelDir` is not hashed again unless a file changed since it was verified."""
    if isinstance(source, VerifiedModelDir):
        path, manifest = source.path, source.recheck()
    else:
        path = Path(source)
        manifest = verify_model_dir(path) if verify else read_manifest(path)
    raw = json.loads((path / CONFIG_FILE).read_text())
    if raw.get("format_version") != FORMAT_VERSION:
        raise ModelIntegrityError(
            f"{path}: model format {raw.get('format_version')} is not supported "
            f"(this finsent reads format {FORMAT_VERSION})"
        )
    config = ModelConfig(**raw)
    encoder_config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    encoder = AutoModel.from_config(encoder_config)
    model = MultiTaskClassifier(encoder, config.labels, pooling=config.pooling, dropout=config.dropout)
    try:
        state = load_file(str(path / WEIGHTS_FILE))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelIntegrityError(f"{path}: cannot load weights ({str(exc).splitlines()[0]})") from None
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    metrics_path = path / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    memories = {
        task: LexicalMemory.load(path, task)
        for task in config.labels
        if all(name in manifest.files for name in memory_files(task))
    }
    return LoadedModel(model, tokenizer, config, manifest, path, metrics, memories)
