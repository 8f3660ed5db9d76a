"""Holdouts: the frozen evaluation sets the gate compares models on, and evaluating a model.

The frozen holdout of a task is, by default, the stratified dev split of its seed file
(FINSENT_SEED, FINSENT_DEV_FRACTION: exactly the rows `finsent train` and the bootstrap
never train on). It is written to FINSENT_HOME/holdout/<task>.jsonl with a manifest holding
its sha256 the first time it is needed, and from then on read from there, hash-verified,
and never split again: an edited seed file or a changed seed must not move the yardstick
that every later model is measured with. FINSENT_HOLDOUT_<TASK>_DATA points at a file of
your own instead (read as it is, its sha256 reported).

The recent holdout comes from the label store (`label_store.recent_holdout`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bert_core import sha256_file
from services.learning.gate import HoldoutReport, TaskMetrics

if TYPE_CHECKING:
    from bert_core import LabelledData, LoadedModel, Predictor
    from services.settings import Settings

HOLDOUT_TASKS = ("sentiment", "topic")
MANIFEST_SUFFIX = ".manifest.json"


class HoldoutError(RuntimeError):
    """A holdout cannot be built or has been tampered with (message says which and what to do)."""


@dataclass(frozen=True)
class FrozenHoldout:
    task: str
    path: Path
    sha256: str
    data: LabelledData
    origin: str  # "seed dev split of <file> (seed 42, fraction 0.1)" or "file <path>"

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "n": len(self.data), "origin": self.origin}


def holdout_dir(settings: Settings) -> Path:
    return settings.holdout_dir


def _atomic_write(path: Path, content: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _label_names(task: str) -> tuple[str, ...]:
    from bert_core import DEFAULT_LABELS

    return DEFAULT_LABELS[task]  # type: ignore[index]


def freeze_seed_holdout(
    task: str, seed_file: Path, out_dir: Path, *, dev_fraction: float, seed: int
) -> FrozenHoldout:
    """Split `seed_file` as training does and write its dev part with a manifest (atomically)."""
    from bert_core import DataError, load_task_files, split_sets

    if not seed_file.is_file():
        raise HoldoutError(
            f"no frozen {task} holdout in {out_dir} yet, and its seed file {seed_file} is missing: "
            f"set FINSENT_{task.upper()}_DATA to the seed file or FINSENT_HOLDOUT_{task.upper()}_DATA "
            "to a holdout file"
        )
    try:
        sets = load_task_files({task: seed_file})
    except DataError as exc:
        raise HoldoutError(f"cannot build the {task} holdout: {exc}") from None
    dev = split_sets(sets, dev_fraction=dev_fraction, seed=seed).dev[task]
    names = _label_names(task)
    lines = [
        json.dumps({"text": t, "label": names[y]}, ensure_ascii=False)
        for t, y in zip(dev.texts, dev.labels, strict=True)
    ]
    content = ("\n".join(lines) + "\n").encode("utf-8")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{task}.jsonl"
    origin = f"seed dev split of {seed_file} (seed {seed}, fraction {dev_fraction})"
    manifest = {
        "task": task,
        "file": path.name,
        "sha256": hashlib.sha256(content).hexdigest(),
        "n": len(dev),
        "labels": list(names),
        "origin": origin,
        "source_sha256": sha256_file(seed_file),
        "seed": seed,
        "dev_fraction": dev_fraction,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # Data first, manifest last: a crash in between leaves no manifest, and the next call
    # freezes again instead of trusting a file nobody vouched for.
    _atomic_write(path, content)
    _atomic_write(out_dir / f"{task}{MANIFEST_SUFFIX}", json.dumps(manifest, indent=2).encode("utf-8"))
    return FrozenHoldout(task, path, manifest["sha256"], dev, origin)  # type: ignore[arg-type]


def read_frozen_holdout(task: str, out_dir: Path) -> FrozenHoldout | None:
    """The frozen holdout of `task` if one was frozen, verified against its manifest."""
    manifest_path = out_dir / f"{task}{MANIFEST_SUFFIX}"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        path = out_dir / str(manifest["file"])
        expected = str(manifest["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HoldoutError(f"{manifest_path}: unreadable holdout manifest ({exc}); restore it") from None
    if not path.is_file():
        raise HoldoutError(
            f"{path}: the frozen {task} holdout is missing (its manifest is there); restore it"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise HoldoutError(
            f"{path}: the frozen {task} holdout does not match its manifest hash (expected "
            f"{expected[:12]}…, got {actual[:12]}…); it was modified: restore it, or delete it and its "
            "manifest to freeze a new one (models evaluated before then are no longer comparable)"
        )
    return FrozenHoldout(task, path, actual, _read_jsonl(task, path), str(manifest.get("origin", "")))


def _read_jsonl(task: str, path: Path) -> LabelledData:
    from bert_core import DataError, LabelledData, LabelSet

    label_set = LabelSet(task, _label_names(task))
    texts: list[str] = []
    labels: list[int] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            texts.append(str(record["text"]))
            labels.append(label_set.to_id(record["label"]))
        except (ValueError, KeyError, TypeError, DataError) as exc:
            raise HoldoutError(f"{path}:{lineno}: not a holdout row ({exc})") from None
    return LabelledData(task, texts, labels)


def _explicit_holdout(task: str, path: Path) -> FrozenHoldout:
    from bert_core import DataError, LabelSet, read_labelled

    try:
        data = read_labelled(path, LabelSet(task, _label_names(task)))
    except DataError as exc:
        raise HoldoutError(f"FINSENT_HOLDOUT_{task.upper()}_DATA: {exc}") from None
    return FrozenHoldout(task, path, sha256_file(path), data, f"file {path}")


def frozen_holdouts(
    settings: Settings, *, tasks: tuple[str, ...] = HOLDOUT_TASKS
) -> dict[str, FrozenHoldout]:
    """Each task's frozen holdout: the configured file, else the frozen seed split (made now
    if this is the first time)."""
    explicit = {
        "sentiment": settings.learning.holdout_sentiment_data,
        "topic": settings.learning.holdout_topic_data,
    }
    seeds = {"sentiment": settings.training.sentiment_data, "topic": settings.training.topic_data}
    out_dir = holdout_dir(settings)
    holdouts: dict[str, FrozenHoldout] = {}
    for task in tasks:
        path = explicit[task]
        if path is not None:
            holdouts[task] = _explicit_holdout(task, path)
            continue
        frozen = read_frozen_holdout(task, out_dir)
        if frozen is None:
            frozen = freeze_seed_holdout(
                task,
                seeds[task],
                out_dir,
                dev_fraction=settings.training.dev_fraction,
                seed=settings.training.seed,
            )
        holdouts[task] = frozen
    return holdouts


def exclude_holdout(data: LabelledData, holdouts: Mapping[str, FrozenHoldout]) -> LabelledData:
    """`data` without any text of a frozen holdout, so training can never see one (the seed's
    split may have moved since the holdout was frozen, and analysts may label holdout texts)."""
    held = {t for h in holdouts.values() for t in h.data.texts}
    keep = [i for i, t in enumerate(data.texts) if t not in held]
    return data if len(keep) == len(data) else data.subset(keep)


def evaluate_model(
    model: str | Path | LoadedModel | Predictor,
    datasets: Mapping[str, LabelledData],
    *,
    batch_size: int = 64,
) -> dict[str, TaskMetrics]:
    """Per-task accuracy, macro-F1, per-class recall and n, by bert_core's evaluation.

    `model` is a model directory (loaded and hash-verified here), a loaded model, or a
    Predictor (its precision is used). Empty sets are skipped; a task the model has no head
    for is skipped too (the gate then reports it missing).
    """
    from bert_core import LoadedModel, Predictor, evaluate_sets, load_model_dir

    bf16 = False
    if isinstance(model, Predictor):
        bf16 = model.precision == "bf16"
        loaded = model.loaded
    elif isinstance(model, LoadedModel):
        loaded = model
    else:
        loaded = load_model_dir(model)
    # A Predictor is measured as it serves: its own copy, int8 or bf16 included.
    network = model.model if isinstance(model, Predictor) else loaded.model
    label_names = loaded.model.label_names
    sets = {
        task: _in_model_order(task, data, label_names[task])
        for task, data in datasets.items()
        if len(data) and task in label_names
    }
    if not sets:
        return {}
    reports = evaluate_sets(
        network,
        loaded.tokenizer,
        sets,
        max_length=loaded.config.max_length,
        batch_size=batch_size,
        bf16=bf16,
        memories=loaded.memories,
    )
    return {task: metrics_from_report(report) for task, report in reports.items()}


def _in_model_order(task: str, data: LabelledData, model_names: list[str]) -> LabelledData:
    """Holdout ids follow DEFAULT_LABELS; a model may order (or name) its classes otherwise."""
    from bert_core import LabelledData

    names = _label_names(task)
    if tuple(model_names) == names:
        return data
    missing = sorted({names[y] for y in data.labels} - set(model_names))
    if missing:
        raise HoldoutError(f"the model's {task} head has no class {', '.join(missing)}: cannot evaluate it")
    position = {name: i for i, name in enumerate(model_names)}
    return LabelledData(task, data.texts, [position[names[y]] for y in data.labels])


def metrics_from_report(report: Mapping[str, Any]) -> TaskMetrics:
    """The gate's view of a bert_core classification report."""
    per_class = report["per_class"]
    return TaskMetrics(
        accuracy=float(report["accuracy"]),
        macro_f1=float(report["macro_f1"]),
        per_class_recall={n: float(c["recall"]) for n, c in per_class.items() if int(c["support"]) > 0},
        n=int(report["n"]),
        per_class_support={n: int(c["support"]) for n, c in per_class.items() if int(c["support"]) > 0},
    )


def evaluate_on_holdouts(
    model: str | Path | LoadedModel | Predictor,
    frozen: Mapping[str, LabelledData],
    recent: Mapping[str, LabelledData],
    *,
    batch_size: int = 64,
) -> HoldoutReport:
    """One model on both holdouts, for `gate.decide`; a directory is loaded once for both."""
    if isinstance(model, str | Path):
        from bert_core import load_model_dir

        model = load_model_dir(model)
    return HoldoutReport(
        frozen=evaluate_model(model, frozen, batch_size=batch_size),
        recent=evaluate_model(model, recent, batch_size=batch_size),
    )
