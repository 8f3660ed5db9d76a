"""Soft-targets files: a teacher's probabilities for both heads, computed once and shipped.

Why: the teacher (MPNet-base, docs/performance.md#encoders-issue-29) costs hours on a CPU
without bf16, so its probabilities are computed once (`finsent teacher-targets`) and a student
distils from the file (`finsent train --soft-targets FILE`, or by default from the file shipped
beside the seed data) without ever loading the teacher. Each seed file labels one task; the
teacher gives every text both heads' probabilities, so every text teaches both student heads.

The file is one `.npz` (a zip of `.npy` arrays, read with `allow_pickle=False`: a file with
pickled or object data is refused, never executed):

- `keys`: uint64, one per distinct text, sorted: the first 8 bytes (little-endian) of the
  sha256 of the normalised text (`LabelledData.texts`), so rows match by text, not position;
- `probs_<head>`: float16, one row per key, the teacher's probabilities over the head's labels;
- `manifest`: uint8, the UTF-8 JSON of `SoftTargetsManifest`: the teacher, the label sets in
  order, the data files' sha256s, the split and the hash of its training rows, the command
  that made the file.

Only the texts of the training split are scored: the dev split stays unseen by the teacher's
targets as by the teacher itself (it trained on the same split, checked when the file is made).

Pure logic (building, validating, matching) is in plain functions; `save_soft_targets` and
`load_soft_targets` are the only I/O. Torch-free: the teacher's inference is
`bert_core.teacher_targets`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from bert_core.data import LabelledData
from bert_core.errors import DataError

log = logging.getLogger(__name__)

FORMAT: Final = "finsent-soft-targets"
FORMAT_VERSION: Final = 1
_PROBS_PREFIX: Final = "probs_"


def text_key(text: str) -> int:
    """The key of one normalised text: sha256's first 8 bytes as a little-endian uint64.

    64 bits: the chance of any collision among 30k texts is about 2.4e-11."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def text_keys(texts: list[str]) -> np.ndarray:
    return np.fromiter((text_key(t) for t in texts), dtype=np.uint64, count=len(texts))


@dataclass(frozen=True)
class SoftTargetsManifest:
    """What a soft-targets file was computed from and how; stored in the file as JSON."""

    teacher: dict[str, Any]  # version, manifest_sha256, base_model, data_hash, dev scores
    encoder: str  # the teacher's encoder (base model name)
    labels: dict[str, list[str]]  # head -> label names, in the order of the probability columns
    data: dict[str, dict[str, Any]]  # task -> {file (name only), sha256 (file bytes), rows}
    split: dict[str, Any]  # {seed, dev_fraction}: the dev split that was left out
    train_hash: str  # `combined_hash` of the training split = the teacher's manifest data_hash
    rows: int  # distinct training texts scored
    command: str  # the command that made the file (regenerate with it)
    created: str  # UTC, ISO 8601
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    dtype: str = "float16"
    scored: str = "training split only: dev texts are never scored"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str) -> SoftTargetsManifest:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: its manifest is not valid JSON ({exc.msg})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise DataError(f"{source}: not a finsent soft-targets file (no {FORMAT!r} manifest)")
        if raw.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{source}: soft-targets format version {raw.get('format_version')!r}; this finsent "
                f"reads version {FORMAT_VERSION}: regenerate the file with its manifest's command"
            )
        names = {f for f in cls.__dataclass_fields__}
        missing = sorted(names - set(raw))
        if missing:
            raise DataError(f"{source}: its manifest lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass(frozen=True)
class SoftTargets:
    """A soft-targets file in memory: sorted unique keys and, per head, one float16 row per key."""

    manifest: SoftTargetsManifest
    keys: np.ndarray
    probs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class RunData:
    """What a training run distils on, to check a file against (see `mismatch`)."""

    labels: Mapping[str, list[str]]
    file_sha256: Mapping[str, str]  # task -> sha256 of the run's data file
    seed: int
    dev_fraction: float
    train_hash: str


# --------------------------------------------------------------------------- pure logic


def build_soft_targets(
    texts: list[str], probs: Mapping[str, np.ndarray], manifest: SoftTargetsManifest
) -> SoftTargets:
    """One row per distinct text, sorted by key: `probs[head]` has a row per text of `texts`;
    a text given twice keeps its first row (the teacher's probabilities depend on the text
    alone). `manifest.rows` is set to the number of distinct texts."""
    keys = text_keys(texts)
    unique, first = np.unique(keys, return_index=True)  # sorted, first occurrence of each
    out: dict[str, np.ndarray] = {}
    for head, names in manifest.labels.items():
        p = np.asarray(probs[head])
        if p.shape != (len(texts), len(names)):
            raise DataError(f"{head} probabilities of shape {p.shape}, not one row of {len(names)} per text")
        out[head] = p[first].astype(np.float16)
    return SoftTargets(manifest=replace(manifest, rows=len(unique)), keys=unique, probs=out)


def average_soft_targets(
    members: Sequence[SoftTargets],
    *,
    command: str,
    created: str,
    head_members: Mapping[str, Sequence[int]] | None = None,
) -> SoftTargets:
    """An ensemble's file: the mean of several teachers' probabilities, text by text.

    Why: teachers differ (two MPNet runs on the seed data disagree on the argmax of about 5 %
    of its training texts), and their mean is a softer target than either, as `finsent train
    --teacher A --teacher B` averages live teachers; this does the same with files already
    computed, so no teacher needs to run again (docs/performance.md#model-quality measures
    it). The members must score the same texts of the same training split
    with the same label sets, or the mean would mix rows of different data: the first
    difference is one `DataError`. Each member's teacher and command are kept in the
    manifest (`teacher.ensemble`), so the file can be remade member by member.

    `head_members` restricts a head to some members (numbered from 1 in `members` order),
    because teachers can differ in which head they teach well; a head not named takes all.
    """
    if not members:
        raise DataError("an ensemble needs at least one soft-targets file")
    first = members[0]
    for i, other in enumerate(members[1:], start=2):
        why = _member_difference(first, other)
        if why is not None:
            raise DataError(f"soft-targets file {i} cannot be averaged with file 1: {why}")
    chosen = chosen_members(len(members), list(first.manifest.labels), head_members or {})
    if len(members) == 1:
        return first
    probs = {
        head: np.mean([members[i - 1].probs[head].astype(np.float32) for i in numbers], axis=0).astype(
            np.float16
        )
        for head, numbers in chosen.items()
    }
    encoders = list(dict.fromkeys(m.manifest.encoder for m in members))
    manifest = replace(
        first.manifest,
        teacher={
            "version": "+".join(str(m.manifest.teacher.get("version")) for m in members),
            "ensemble": [
                {"teacher": m.manifest.teacher, "command": m.manifest.command, "created": m.manifest.created}
                for m in members
            ],
            **({"head_members": {h: list(n) for h, n in head_members.items()}} if head_members else {}),
        },
        encoder="+".join(encoders),
        command=command,
        created=created,
    )
    return SoftTargets(manifest=manifest, keys=first.keys, probs=probs)


def chosen_members(count: int, heads: list[str], given: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """Each head's members (numbered from 1) for `average_soft_targets`; a wrong head or
    number is one `DataError`, checked before any teacher runs."""
    for head, numbers in given.items():
        if head not in heads:
            raise DataError(f"no head {head!r} to choose members for (heads: {', '.join(heads)})")
        if not numbers or any(not 1 <= n <= count for n in numbers):
            raise DataError(f"{head}: members are numbered 1 to {count}, not {list(numbers)}")
    return {head: sorted(set(given.get(head, range(1, count + 1)))) for head in heads}


def _member_difference(a: SoftTargets, b: SoftTargets) -> str | None:
    ma, mb = a.manifest, b.manifest
    if ma.labels != mb.labels:
        return "their label sets differ"
    if {t: d.get("sha256") for t, d in ma.data.items()} != {t: d.get("sha256") for t, d in mb.data.items()}:
        return "they were computed on other data files (sha256)"
    if ma.split != mb.split or ma.train_hash != mb.train_hash:
        return "they were computed on other training splits"
    if a.keys.shape != b.keys.shape or not bool(np.array_equal(a.keys, b.keys)):
        return "they score other texts"
    return None


def mismatch(manifest: SoftTargetsManifest, run: RunData) -> str | None:
    """Why the file does not belong to this run's training data, or None when it does.

    The file must have the run's label sets in order, a sha256 for each of the run's data
    files that matches, the same split seed and dev fraction, and the same training rows
    (`train_hash`, as the teacher's manifest records them): a teacher that scored texts of
    this run's dev split could leak their labels into the student. The first reason found is
    returned, the most specific first.
    """
    for head, names in run.labels.items():
        theirs = manifest.labels.get(head)
        if theirs is None:
            return f"it has no {head} probabilities (heads: {', '.join(manifest.labels)})"
        if list(theirs) != list(names):
            return f"its {head} labels {theirs} differ from this run's {list(names)}"
    for task, sha in run.file_sha256.items():
        recorded = manifest.data.get(task)
        if recorded is None:
            return f"it was computed without a {task} file"
        if recorded.get("sha256") != sha:
            return (
                f"it was computed on another {task} file ({recorded.get('file')}, sha256 "
                f"{str(recorded.get('sha256'))[:12]}…; this run's: {sha[:12]}…)"
            )
    split = (manifest.split.get("seed"), manifest.split.get("dev_fraction"))
    if split != (run.seed, run.dev_fraction):
        return (
            f"it was computed with split seed {split[0]} and dev fraction {split[1]}; "
            f"this run uses {run.seed} and {run.dev_fraction}"
        )
    if manifest.train_hash != run.train_hash:
        return "its training rows differ from this run's training split (train_hash)"
    return None


def row_indices(keys: np.ndarray, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    """Row of each text in the sorted `keys`, and the positions of texts that have none."""
    wanted = text_keys(texts)
    pos = np.searchsorted(keys, wanted)
    pos = np.minimum(pos, max(len(keys) - 1, 0))
    found = keys[pos] == wanted if len(keys) else np.zeros(len(wanted), dtype=bool)
    return pos, np.flatnonzero(~found).tolist()


def teacher_targets_from(
    targets: SoftTargets,
    train_sets: Mapping[str, LabelledData],
    heads: Sequence[str],
    *,
    own_task: bool = False,
    source: str = "soft targets",
) -> dict[str, dict[str, np.ndarray]]:
    """`fine_tune`'s `teacher_targets` from a file: per set, the student's other `heads` (and
    its own with `own_task`) as float32 rows in the set's order, renormalised after float16
    rounding.

    Every training text must have a row: a missing one means the file is not this run's
    (it was edited or cut), and distilling only some rows would change the recipe silently,
    so it is an error naming how many and the first one, not a fallback.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for task, data in train_sets.items():
        pos, missing = row_indices(targets.keys, data.texts)
        if missing:
            first = data.texts[missing[0]]
            raise DataError(
                f"{source}: no soft targets for {len(missing)} of {len(data)} {task} training texts "
                f"(first: {first[:60]!r}); regenerate the file for these data files"
            )
        per_head = {}
        for head in heads:
            if head == task and not own_task:
                continue
            rows = targets.probs[head][pos].astype(np.float32)
            per_head[head] = rows / rows.sum(axis=1, keepdims=True).clip(min=1e-6)
        if per_head:
            out[task] = per_head
    return out


# --------------------------------------------------------------------------- file I/O


def save_soft_targets(path: str | Path, targets: SoftTargets, *, overwrite: bool = False) -> Path:
    """Write the `.npz` atomically (a temporary file renamed into place)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DataError(f"{path}: a soft-targets file ends in .npz")
    if path.exists() and not overwrite:
        raise DataError(f"{path}: exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "keys": targets.keys.astype("<u8"),
        "manifest": np.frombuffer(targets.manifest.to_json().encode("utf-8"), dtype=np.uint8),
    }
    for head, probs in targets.probs.items():
        arrays[_PROBS_PREFIX + head] = probs.astype("<f2")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_soft_targets(path: str | Path) -> SoftTargets:
    """Read and check a soft-targets file; anything unexpected is one `DataError` line.

    `allow_pickle=False`: an array of Python objects (pickle) is refused, never unpickled,
    and so is a file that is a pickle rather than a zip of arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such soft-targets file")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a soft-targets file (an .npz zip of arrays); refused")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:  # numpy's refusal of object arrays
        raise DataError(f"{path}: holds pickled or object data ({exc}); refused") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read the soft-targets file ({exc})") from None
    stray = sorted(name for name, value in arrays.items() if not isinstance(value, np.ndarray))
    if stray:  # zip members that are not .npy arrays
        raise DataError(f"{path}: holds members that are not arrays ({', '.join(stray)}); refused")
    for name in ("keys", "manifest"):
        if name not in arrays:
            raise DataError(f"{path}: not a soft-targets file (no {name!r} array)")
    manifest = SoftTargetsManifest.from_json(_utf8(arrays.pop("manifest"), path), source=str(path))
    keys = arrays.pop("keys")
    if keys.dtype != np.dtype("<u8") or keys.ndim != 1:
        raise DataError(f"{path}: keys are {keys.dtype} {keys.shape}, not one uint64 per text")
    if len(keys) != manifest.rows or (len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1]))):
        raise DataError(f"{path}: {len(keys)} keys for {manifest.rows} rows, or not sorted and unique")
    probs: dict[str, np.ndarray] = {}
    for head, names in manifest.labels.items():
        p = arrays.pop(_PROBS_PREFIX + head, None)
        if p is None:
            raise DataError(f"{path}: the manifest names head {head!r} but the file has no probabilities")
        if p.dtype != np.dtype("<f2") or p.shape != (len(keys), len(names)):
            raise DataError(
                f"{path}: {head} probabilities are {p.dtype} {p.shape}, "
                f"not float16 ({len(keys)}, {len(names)})"
            )
        probs[head] = p
    if arrays:
        raise DataError(f"{path}: unexpected arrays {sorted(arrays)}; refused")
    return SoftTargets(manifest=manifest, keys=keys, probs=probs)


def _utf8(raw: np.ndarray, path: Path) -> str:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise DataError(f"{path}: the manifest is {raw.dtype} {raw.shape}, not UTF-8 bytes")
    try:
        return raw.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: the manifest is not UTF-8") from None


def describe(targets: SoftTargets) -> str:
    """One line naming a file's teacher and data, for logs and the CLI."""
    m = targets.manifest
    return (
        f"soft targets of teacher {m.teacher.get('version')} ({m.encoder}) for {m.rows} training texts, "
        f"split seed {m.split.get('seed')} dev {m.split.get('dev_fraction')}"
    )


def file_summary(path: Path, targets: SoftTargets, sha256: str) -> dict[str, Any]:
    """What a student records of the file it distilled from (its training record)."""
    return {
        "file": path.name,
        "sha256": sha256,
        "teacher": targets.manifest.teacher.get("version"),
        "encoder": targets.manifest.encoder,
        "created": targets.manifest.created,
    }
