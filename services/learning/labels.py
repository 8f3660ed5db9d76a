"""Analyst labels before they are stored: identity of a text, its split, and import validation.

Pure functions only: the label store, the CLI import and the dashboard all go through these,
so a label means the same thing whichever way it arrived.

- A label is attached to the *normalised* text (the string the model actually sees), so the
  same headline with a different URL or HTML escaping is one text, labelled once per analyst.
- The split (train or recent holdout) is decided by the text's hash, not by chance: every
  analyst's label on a text lands in the same split, and re-importing a file changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, cast

from bert_core import DEFAULT_LABELS, DataError, LabelSet, normalize_text

Split = Literal["train", "recent_holdout"]
# Column widths of the `labels` table: longer values would fail the whole batch at the database.
MAX_LABELLER = 200
MAX_SOURCE = 200
MAX_EVENT_ID = 128
KNOWN_COLUMNS: Final[frozenset[str]] = frozenset({"text", "event_id", "task", "label", "labeller"})


def text_hash(text: str) -> str:
    """sha256 of the normalised text: the identity of a text across imports and analysts."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def split_for(text_hash: str, recent_share: float) -> Split:
    """Which split a text belongs to, from its hash alone (so it never depends on arrival order).

    The first 32 bits of a sha256 are uniform, so about `recent_share` of texts are held out.
    """
    if not 0.0 <= recent_share < 1.0:
        raise ValueError(f"recent_share must be in [0, 1), got {recent_share}")
    return "recent_holdout" if int(text_hash[:8], 16) / 2**32 < recent_share else "train"


@dataclass(frozen=True)
class NewLabel:
    """A validated label, before storage. `text` is as given (the store normalises it) or None
    when only `event_id` was given: the store then uses the stored story's headline. `label`
    is always a class name, never an id."""

    task: str
    label: str
    labeller: str
    source: str
    text: str | None = None
    event_id: str | None = None
    row: int | None = None  # where it came from in an import, for error reports

    def __post_init__(self) -> None:
        if self.text is None and self.event_id is None:
            raise ValueError("a label needs a text or an event_id")


@dataclass(frozen=True)
class RowError:
    """One rejected input row: its number as the user counts it (0: not from a file), and
    what is wrong with it."""

    row: int
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}" if self.row > 0 else self.message


def _cell(row: Mapping[str, object], column: str) -> str | None:
    """A cell as stripped text; None for a missing column, an empty cell or a JSON null."""
    value = row.get(column)
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from a spreadsheet export
        return None
    text = str(value).strip()
    return text or None


def parse_label_rows(
    rows: Iterable[Mapping[str, object]],
    labels: Mapping[str, Sequence[str]] | None = None,
    *,
    default_labeller: str | None = None,
    source: str = "import",
    start: int = 1,
    row_numbers: Iterable[int] | None = None,
) -> tuple[list[NewLabel], list[RowError]]:
    """Validate import rows: each becomes a `NewLabel` or a `RowError`, never both, never neither.

    A row needs `text` or `event_id`, a `task` (topic | sentiment, any case) and a `label`
    given as a class id or name (names match case- and spacing-insensitively) of `labels`
    (default: bert_core's DEFAULT_LABELS). `labeller`
    comes from the row, else `default_labeller`. Rows are numbered from `start`, or by
    `row_numbers` when the reader knows better (a JSONL file's line numbers).
    """
    chosen = labels if labels is not None else cast(Mapping[str, Sequence[str]], DEFAULT_LABELS)
    label_sets = {task: LabelSet(task, names) for task, names in chosen.items()}
    numbers = iter(row_numbers) if row_numbers is not None else None
    parsed: list[NewLabel] = []
    errors: list[RowError] = []
    for offset, row in enumerate(rows):
        number = next(numbers) if numbers is not None else start + offset
        try:
            parsed.append(_parse_row(row, label_sets, default_labeller, source, number))
        except DataError as exc:
            errors.append(RowError(number, str(exc)))
    return parsed, errors


def _parse_row(
    row: Mapping[str, object],
    label_sets: Mapping[str, LabelSet],
    default_labeller: str | None,
    source: str,
    number: int,
) -> NewLabel:
    text = _cell(row, "text")
    event_id = _cell(row, "event_id")
    if text is not None and not normalize_text(text):
        raise DataError("text is empty once URLs and control characters are removed")
    if text is None and event_id is None:
        raise DataError("needs a text or an event_id (both are empty)")
    if event_id is not None and len(event_id) > MAX_EVENT_ID:
        raise DataError(f"event_id is longer than {MAX_EVENT_ID} characters")
    task = _cell(row, "task")
    if task is None:
        raise DataError(f"task is empty; expected one of: {', '.join(label_sets)}")
    task = task.lower()
    if task not in label_sets:
        raise DataError(f"unknown task {task!r}; expected one of: {', '.join(label_sets)}")
    raw_label = _cell(row, "label")
    if raw_label is None:
        raise DataError(f"{task} label is empty")
    label_set = label_sets[task]
    label = label_set.names[label_set.to_id(raw_label)]  # DataError names the valid choices
    labeller = _cell(row, "labeller") or (default_labeller.strip() if default_labeller else None)
    if not labeller:
        raise DataError("no labeller: add a labeller column or give a default labeller")
    if len(labeller) > MAX_LABELLER:
        raise DataError(f"labeller is longer than {MAX_LABELLER} characters")
    return NewLabel(
        task=task,
        label=label,
        labeller=labeller,
        source=source[:MAX_SOURCE],
        text=text,
        event_id=event_id,
        row=number,
    )
