"""Computing a soft-targets file (`bert_core.soft_targets`) from a trained teacher model.

Why its own module: this is the one place the teacher runs. It scores every distinct text of
the training split of the teacher's own data files, for every head, once; students then read
the file (`finsent train --soft-targets`) instead of loading the teacher. The teacher must
have trained on exactly that training split (its manifest's data hash), so the dev split it
leaves out is unseen by the teacher and by its targets alike.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bert_core.artifacts import LoadedModel
from bert_core.batching import tokenize
from bert_core.encoders import encoder_label
from bert_core.errors import DataError, ModelConfigError
from bert_core.hashing import sha256_file
from bert_core.inference.passes import predict_proba
from bert_core.labels import DEFAULT_LABELS
from bert_core.manifest import manifest_sha256
from bert_core.recipes import combined_hash, load_task_files, split_sets, teacher_mismatch
from bert_core.soft_targets import (
    RunData,
    SoftTargets,
    SoftTargetsManifest,
    average_soft_targets,
    build_soft_targets,
    chosen_members,
    mismatch,
)

log = logging.getLogger(__name__)

CHUNK = 512  # texts per progress step: a bar that moves every few seconds on a CPU


def compute_soft_targets(
    teacher: LoadedModel,
    paths: Mapping[str, str | Path],
    *,
    seed: int,
    dev_fraction: float,
    command: str,
    bf16: bool = False,
    batch_size: int = 64,
    progress: bool = True,
) -> SoftTargets:
    """The teacher's probabilities for all its heads on every distinct training text of
    `paths` (split with `seed` and `dev_fraction`, as `finsent train` splits them).

    Refused (`ModelConfigError`) when the teacher trained on other rows than that training
    split, or with other label sets: its targets could then carry dev labels into a student.
    """
    sets = load_task_files(paths)
    split = split_sets(sets, dev_fraction=dev_fraction, seed=seed)
    remedy = (
        f"these files split with seed {seed} and dev fraction {dev_fraction}: give the files, --seed "
        "and --dev-fraction it trained with"
    )
    problem = teacher_mismatch(teacher, split.train, rows_remedy=remedy)
    if problem is not None:
        raise ModelConfigError(f"{teacher.path}: {problem}")
    texts = [t for data in split.train.values() for t in data.texts]
    unique = list(dict.fromkeys(texts))  # each text scored once, in first-seen order
    probs = score_texts(teacher, unique, bf16=bf16, batch_size=batch_size, progress=progress)
    dev = teacher.metrics.get("dev", {}) if isinstance(teacher.metrics, dict) else {}
    manifest = SoftTargetsManifest(
        teacher={
            "version": teacher.manifest.version,
            "manifest_sha256": manifest_sha256(teacher.path),
            "base_model": encoder_label(teacher.config.base_model),
            "data_hash": teacher.manifest.data_hash,
            "training": {
                k: teacher.config.training.get(k)
                for k in ("epochs", "learning_rate", "batch_size", "precision", "steps", "seconds")
            },
            "dev": {
                t: {m: r.get(m) for m in ("accuracy", "macro_f1")}
                for t, r in dev.items()
                if isinstance(r, dict)
            },
        },
        encoder=encoder_label(teacher.config.base_model),
        labels={head: list(names) for head, names in teacher.config.labels.items()},
        data={
            task: {
                "file": Path(path).name,
                "sha256": sha256_file(Path(path)),
                "rows": len(sets[task]),
                "train_rows": len(split.train[task]),
            }
            for task, path in paths.items()
        },
        split={"seed": seed, "dev_fraction": dev_fraction},
        train_hash=teacher.manifest.data_hash,  # checked equal to the split's above
        rows=len(unique),
        command=command,
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return build_soft_targets(unique, probs, manifest)


def compute_ensemble_targets(
    teachers: Sequence[tuple[str, Callable[[], LoadedModel]]],
    files: Sequence[tuple[Path, SoftTargets]],
    paths: Mapping[str, str | Path],
    *,
    seed: int,
    dev_fraction: float,
    command: str,
    bf16: bool = False,
    batch_size: int = 64,
    progress: bool = True,
    head_members: Mapping[str, Sequence[int]] | None = None,
) -> SoftTargets:
    """The mean of several teachers' soft targets: teachers scored here (each loaded when its
    turn comes and dropped after, so two base-size models never sit in memory together) and
    files computed before, each checked against `paths` and the split like a student checks
    its file. `teachers` pairs each loader with the command that would score that teacher
    alone, recorded as the member's command. One teacher and no files is exactly
    `compute_soft_targets`. `head_members`: see `average_soft_targets`."""
    sets = load_task_files(paths)
    split = split_sets(sets, dev_fraction=dev_fraction, seed=seed)
    run = RunData(
        labels={task: list(DEFAULT_LABELS[task]) for task in sets},  # type: ignore[index]
        file_sha256={task: sha256_file(Path(p)) for task, p in paths.items()},
        seed=seed,
        dev_fraction=dev_fraction,
        train_hash=combined_hash(split.train),
    )
    chosen_members(len(teachers) + len(files), list(DEFAULT_LABELS), head_members or {})
    members: list[SoftTargets] = []
    for path, targets in files:  # cheap checks before any teacher runs
        reason = mismatch(targets.manifest, run)
        if reason is not None:
            raise DataError(f"{path}: cannot join the ensemble: {reason}")
        members.append(targets)
    for own_command, load in teachers:
        members.append(
            compute_soft_targets(
                load(),
                paths,
                seed=seed,
                dev_fraction=dev_fraction,
                command=own_command if len(teachers) + len(files) > 1 else command,
                bf16=bf16,
                batch_size=batch_size,
                progress=progress,
            )
        )
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return average_soft_targets(members, command=command, created=created, head_members=head_members)


def score_texts(
    teacher: LoadedModel, texts: list[str], *, bf16: bool, batch_size: int, progress: bool
) -> dict[str, np.ndarray]:
    """All heads' probabilities per text, in `texts` order, in length-sorted chunks (little
    padding) with a progress bar and ETA."""
    tokens = tokenize(teacher.tokenizer, texts, teacher.config.max_length)
    order = np.argsort([len(t) for t in tokens], kind="stable")
    heads = list(teacher.model.heads)
    out = {h: np.zeros((len(texts), len(teacher.config.labels[h])), dtype=np.float32) for h in heads}
    pad_id = int(teacher.tokenizer.pad_token_id or 0)
    with tqdm(total=len(texts), desc="teacher targets", unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), CHUNK):
            idx = order[start : start + CHUNK]
            probs = predict_proba(
                teacher.model, [tokens[i] for i in idx], pad_id, tasks=heads, bf16=bf16, batch_size=batch_size
            )
            for head, p in probs.items():
                out[head][idx] = p
            bar.update(len(idx))
    return out
