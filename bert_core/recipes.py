"""The end-to-end training recipe: files in, verified model directory out.

Shared by `finsent train` and the retraining scheduler, so both produce identical
directories (split, optional MLM, fine-tune, evaluate, save).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bert_core.artifacts import LoadedModel, Manifest, load_model_dir, save_model_dir
from bert_core.data import LabelledData, read_labelled, read_texts, stratified_split
from bert_core.errors import DataError, ModelConfigError
from bert_core.hashing import sha256_file
from bert_core.labels import DEFAULT_LABELS, LabelSet
from bert_core.mlm import MlmConfig, pretrain_mlm
from bert_core.soft_targets import (
    RunData,
    SoftTargets,
    describe,
    file_summary,
    load_soft_targets,
    mismatch,
    teacher_targets_from,
)
from bert_core.training import (
    TrainConfig,
    TrainResult,
    fine_tune,
    resolve_train_precision,
    teacher_probabilities,
)

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    train: dict[str, LabelledData]
    dev: dict[str, LabelledData]


def load_task_files(paths: Mapping[str, str | Path | None]) -> dict[str, LabelledData]:
    """Read each task's file with the default label sets; tasks without a file are skipped."""
    return {
        task: read_labelled(path, LabelSet(task, DEFAULT_LABELS[task]))  # type: ignore[index]
        for task, path in paths.items()
        if path is not None
    }


def split_sets(sets: Mapping[str, LabelledData], *, dev_fraction: float, seed: int) -> SplitData:
    train, dev = {}, {}
    for task, data in sets.items():
        tr, dv = stratified_split(data.labels, dev_fraction=dev_fraction, seed=seed)
        train[task], dev[task] = data.subset(tr), data.subset(dv)
    return SplitData(train, dev)


def combined_hash(sets: Mapping[str, LabelledData]) -> str:
    digest = hashlib.sha256()
    for task in sorted(sets):
        digest.update(sets[task].content_hash().encode())
    return digest.hexdigest()


def teacher_mismatch(
    teacher: LoadedModel, train_sets: Mapping[str, LabelledData], *, rows_remedy: str
) -> str | None:
    """Why `teacher` may not teach (or score soft targets for) a run on `train_sets`, or None.

    A teacher must have trained on exactly these training rows (its manifest's data hash): one
    that saw texts held out from it would carry their labels into the student through its
    probabilities. `rows_remedy` ends the message in that case only: what the caller's user
    should change. Its heads must also have the default label names, in order (the hash
    covers label ids, not names)."""
    if teacher.manifest.data_hash != combined_hash(train_sets):  # it hashes the task set too
        return (
            "the teacher was trained on other rows than this training split (its data hash differs), "
            f"so it may have seen texts held out from it; {rows_remedy}"
        )
    for task in train_sets:
        if teacher.config.labels.get(task) != list(DEFAULT_LABELS[task]):  # type: ignore[index]
            return f"the teacher has no {task} head with the default labels"
    return None


def train_model(
    paths: Mapping[str, str | Path | None],
    out_dir: str | Path,
    config: TrainConfig,
    *,
    dev_fraction: float = 0.1,
    mlm_text_files: Sequence[str | Path] = (),
    mlm_config: MlmConfig | None = None,
    overwrite: bool = False,
) -> tuple[TrainResult, Manifest]:
    """Split, (optionally) MLM-adapt the encoder, fine-tune, evaluate on dev, save."""
    if config.teachers and config.soft_targets and not config.soft_targets_optional:
        raise ModelConfigError("distil from teacher models or from a soft-targets file, not both")
    sets = load_task_files(paths)
    split = split_sets(sets, dev_fraction=dev_fraction, seed=config.seed)
    teachers = _checked_teachers(config, split.train)  # before any long step: a wrong one fails fast
    label_names = {t: list(DEFAULT_LABELS[t]) for t in sets}  # type: ignore[index]
    from_file = (
        None
        if teachers
        else _checked_soft_targets(config, paths, split.train, label_names, dev_fraction=dev_fraction)
    )
    mlm_summary: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="finsent-mlm-") as mlm_dir:
        if mlm_text_files:
            texts: list[str] = []
            for f in mlm_text_files:
                texts.extend(read_texts(f))
            # Dev texts must not leak into pre-training either.
            dev_texts = {t for d in split.dev.values() for t in d.texts}
            texts = [t for t in texts if t not in dev_texts]
            mlm_cfg = replace(
                mlm_config or MlmConfig(),
                base_model=config.base_model,
                max_length=config.max_length,
                seed=config.seed,
                progress=config.progress,
            )
            mlm_summary = pretrain_mlm(texts, mlm_dir, mlm_cfg)
            config = replace(config, base_model=mlm_dir)
        targets: dict[str, dict[str, np.ndarray]] | None = None
        if teachers:
            targets = teacher_probabilities(
                [(t.model, t.tokenizer, t.config.max_length) for t in teachers],
                split.train,
                own_task=config.distills_own_task,
                bf16=resolve_train_precision(config.precision) == "bf16",
            )
        elif from_file is not None:
            targets = teacher_targets_from(
                from_file.targets,
                split.train,
                list(label_names),
                own_task=config.distills_own_task,
                source=str(from_file.path),
            )
        teacher_versions = [t.manifest.version for t in teachers]
        if from_file is not None:
            teacher_versions = [str(from_file.targets.manifest.teacher.get("version"))]
        del teachers  # only their targets are needed from here on: free the models' memory
        result = fine_tune(
            split.train,
            split.dev,
            label_names,
            config,
            teacher_targets=targets,
            teacher_versions=teacher_versions,
        )
    if mlm_summary is not None:
        result.model_config.base_model = mlm_summary["base_model"]
        result.model_config.training["base_model"] = mlm_summary["base_model"]
        result.model_config.training["mlm"] = mlm_summary
    if from_file is not None and result.model_config.training.get("teacher"):
        result.model_config.training["teacher"]["soft_targets"] = file_summary(
            from_file.path, from_file.targets, from_file.sha256
        )
    result.model_config.training["dev_fraction"] = dev_fraction
    result.model_config.training["data_files"] = {t: str(p) for t, p in paths.items() if p}
    return result, save_result(result, out_dir, split.train, overwrite=overwrite)


def _checked_teachers(config: TrainConfig, train_sets: Mapping[str, LabelledData]) -> list[LoadedModel]:
    """`config.teachers`, each refused unless it trained on exactly this run's training rows
    (a teacher that saw this run's dev texts would leak their labels) with the same labels."""
    teachers = []
    for path in config.teachers:
        teacher = load_model_dir(path)
        remedy = "train the teacher with the same files, seed and dev fraction as this run"
        problem = teacher_mismatch(teacher, train_sets, rows_remedy=remedy)
        if problem is not None:
            raise ModelConfigError(f"{path}: {problem}")
        log.info("distilling from teacher %s", teacher.manifest.version)
        teachers.append(teacher)
    return teachers


@dataclass(frozen=True)
class _FileTargets:
    path: Path
    sha256: str
    targets: SoftTargets


def _checked_soft_targets(
    config: TrainConfig,
    paths: Mapping[str, str | Path | None],
    train_sets: Mapping[str, LabelledData],
    label_names: Mapping[str, list[str]],
    *,
    dev_fraction: float,
) -> _FileTargets | None:
    """`config.soft_targets`, checked against this run's files, split and labels (`mismatch`).

    A file given explicitly must match (one `DataError` line saying why not). The shipped file
    (`soft_targets_optional`) is used only where it matches: absent (a package built without
    it), it is skipped quietly; made for other data, the run trains without it and logs
    why, since a user's own files are expected to differ from the seed files it was made for.
    """
    if not config.soft_targets:
        return None
    path = Path(config.soft_targets)
    if config.soft_targets_optional and not path.is_file():
        log.info("no shipped soft targets at %s: training without distillation", path)
        return None
    try:
        targets = load_soft_targets(path)
        run = RunData(
            labels=label_names,
            file_sha256={t: sha256_file(Path(p)) for t, p in paths.items() if p is not None},
            seed=config.seed,
            dev_fraction=dev_fraction,
            train_hash=combined_hash(train_sets),
        )
        reason = mismatch(targets.manifest, run)
        if reason is not None:
            raise DataError(f"{path}: the soft targets do not match this run's data: {reason}")
    except DataError as exc:
        if not config.soft_targets_optional:
            raise
        log.warning("%s; training without distillation", exc)
        return None
    log.info("distilling from %s", describe(targets))
    return _FileTargets(path=path, sha256=sha256_file(path), targets=targets)


def save_result(
    result: TrainResult,
    out_dir: str | Path,
    train_sets: Mapping[str, LabelledData],
    *,
    overwrite: bool = False,
) -> Manifest:
    """A fine-tuning result as a model directory: dev reports and history as its metrics,
    the hash of the rows it trained on, the model it started from as its parent."""
    return save_model_dir(
        out_dir,
        result.model,
        result.tokenizer,
        result.model_config,
        metrics={"dev": result.dev_reports, "history": result.history},
        data_hash=combined_hash(train_sets),
        parent=result.parent_version,
        overwrite=overwrite,
        memories=result.memories,
    )
