"""Reading labelled and unlabelled text files, and the stratified dev split.

Files are CSV/TSV, JSONL or Parquet with a text column and a label column whose
values are class ids or names. Problems are reported with the file, the row and
what to do, because these files are written by hand by analysts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bert_core.errors import DataError
from bert_core.labels import LabelSet
from bert_core.text import normalize_text

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")


@dataclass(frozen=True)
class LabelledData:
    """Normalised texts and their class ids for one task."""

    task: str
    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabelledData:
        return LabelledData(self.task, [self.texts[i] for i in indices], [self.labels[i] for i in indices])

    def content_hash(self) -> str:
        """sha256 over the normalised rows: identifies the training data in a model's manifest."""
        digest = hashlib.sha256(self.task.encode())
        for text, label in zip(self.texts, self.labels, strict=True):
            digest.update(f"\n{label}\t{text}".encode())
        return digest.hexdigest()


def _decode_utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not valid UTF-8 (byte {exc.start}, line {line}); re-save the file as UTF-8"
        ) from None


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/JSONL/Parquet file into a frame of strings."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"{path}: unsupported format {suffix!r}; use one of {SUPPORTED_SUFFIXES}")
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            content = _decode_utf8(path)
            if suffix in (".jsonl", ".json"):
                rows = []
                for lineno, line in enumerate(content.splitlines(), start=1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
                frame = pd.DataFrame(rows)
            elif suffix == ".txt":
                frame = pd.DataFrame({"text": [ln for ln in content.splitlines() if ln.strip()]})
            else:
                from io import StringIO

                sep = "\t" if suffix == ".tsv" else ","
                frame = pd.read_csv(StringIO(content), sep=sep, dtype=str, keep_default_na=False)
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for malformed files
        raise DataError(f"{path}: cannot parse as {suffix[1:]} ({exc})") from None
    return frame


def _require_column(frame: pd.DataFrame, column: str, path: Path) -> None:
    if column not in frame.columns:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(
            f"{path}: missing column {column!r} (found: {found}); rename it or pass the column name"
        )


def read_labelled(
    path: str | Path,
    label_set: LabelSet,
    *,
    text_column: str = "text",
    label_column: str = "label",
    skip_empty: bool = True,
) -> LabelledData:
    """Read one task's labelled file; every row needs a known label.

    Rows whose text is empty after normalisation (real feeds contain link-only tweets)
    carry nothing to learn from: they are skipped with a warning naming them, or with
    `skip_empty=False` refused with an error.
    """
    path = Path(path)
    frame = read_table(path)
    _require_column(frame, text_column, path)
    _require_column(frame, label_column, path)
    texts: list[str] = []
    labels: list[int] = []
    skipped: list[int] = []
    # Row numbers are reported as in a spreadsheet: header is row 1.
    for row_no, (raw_text, raw_label) in enumerate(
        zip(frame[text_column].tolist(), frame[label_column].tolist(), strict=True), start=2
    ):
        if not isinstance(raw_text, str):
            raise DataError(f"{path}: row {row_no}: text is {raw_text!r}, not a string")
        text = normalize_text(raw_text)
        if not text:
            if not skip_empty:
                raise DataError(f"{path}: row {row_no}: text is empty")
            skipped.append(row_no)
            continue
        try:
            labels.append(label_set.to_id(raw_label))
        except DataError as exc:
            raise DataError(f"{path}: row {row_no}: {exc}") from None
        texts.append(text)
    if skipped:
        log.warning(
            "%s: skipped %d row(s) whose text is empty after normalisation (rows %s)",
            path,
            len(skipped),
            ", ".join(map(str, skipped[:10])) + (" …" if len(skipped) > 10 else ""),
        )
    if not texts:
        raise DataError(f"{path}: no rows with text")
    return LabelledData(label_set.task, texts, labels)


def read_texts(path: str | Path, *, text_column: str | None = None) -> list[str]:
    """Read unlabelled texts (for MLM): a .txt file (one per line) or a table's text column."""
    path = Path(path)
    frame = read_table(path)
    if text_column is None:
        text_column = "text" if "text" in frame.columns else None
        if text_column is None:
            # pandas 3 reads text as the `str` dtype, not object: ask pandas, which also checks
            # that an object column really holds strings.
            string_cols = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
            if not string_cols:
                raise DataError(f"{path}: no text column; pass --text-column")
            text_column = str(string_cols[0])
    _require_column(frame, text_column, path)
    texts = [normalize_text(t) for t in frame[text_column].tolist() if isinstance(t, str)]
    return [t for t in texts if t]


def stratified_split(labels: Sequence[int], *, dev_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split row indices into train and dev, keeping each class's share; fixed by the seed.

    Each class with at least two rows puts at least one in dev, so every class is evaluated.
    """
    if not 0.0 < dev_fraction < 1.0:
        raise DataError(f"dev fraction must be between 0 and 1, got {dev_fraction}")
    rng = np.random.default_rng(seed)
    label_arr = np.asarray(labels)
    train: list[int] = []
    dev: list[int] = []
    for cls in np.unique(label_arr):
        idx = np.flatnonzero(label_arr == cls)
        rng.shuffle(idx)
        n_dev = round(len(idx) * dev_fraction)
        n_dev = min(max(n_dev, 1), len(idx) - 1) if len(idx) >= 2 else 0
        dev.extend(idx[:n_dev].tolist())
        train.extend(idx[n_dev:].tolist())
    return sorted(train), sorted(dev)
