"""The label store: analyst labels in the `labels` table, and the views retraining needs.

Writes happen in the caller's transaction (the CLI import, the dashboard, tests), like the
rest of the storage layer. Invariants:

- one row per (text, task, labeller): a relabel replaces that analyst's label. A *changed*
  label gets a new row id, so "labels after the last run's watermark" (what retraining
  counts) includes corrections, not just first labels;
- the split is per text, fixed by the first label the text ever got: once a text is in the
  recent holdout, no later label (another analyst, another task, a changed share) moves it
  into training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, distinct, func, select
from sqlalchemy.orm import Session

from services.learning.labels import MAX_LABELLER, MAX_SOURCE, NewLabel, RowError, Split, split_for
from services.storage.learning_models import LabelRow
from services.storage.models import NewsItemRow
from services.storage.repository import dialect_insert

if TYPE_CHECKING:
    from bert_core import LabelledData

LABELS = cast(Table, LabelRow.__table__)
CHUNK = 500  # rows per IN (...) list or multi-row INSERT: far below every driver's parameter cap


@dataclass
class LabelCounts:
    """What `record_labels` did. `duplicates`: rows superseded by a later row of the same batch
    for the same (text, task, labeller); `errors`: rows refused (unknown event_id)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return self.inserted + self.updated


@dataclass(frozen=True)
class StoredLabel:
    id: int
    task: str
    label: str
    labeller: str
    text: str
    text_hash: str
    event_id: str | None
    source: str
    split: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: LabelRow) -> StoredLabel:
        return cls(
            row.id,
            row.task,
            row.label,
            row.labeller,
            row.text,
            row.text_hash,
            row.event_id,
            row.source,
            row.split,
            row.created_at,
            row.updated_at,
        )


@dataclass(frozen=True)
class LabelledText:
    """One text's agreed label for training or evaluation: the label most of its analysts
    gave, ties going to the most recent; `last_id` is the newest label id that went into it."""

    text: str
    text_hash: str
    label: str
    labellers: int
    last_id: int


@dataclass(frozen=True)
class Disagreement:
    text_hash: str
    task: str
    text: str
    labels: dict[str, str]  # labeller -> label
    last_updated: datetime


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _headlines(session: Session, event_ids: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(event_ids)):
        stmt = select(NewsItemRow.event_id, NewsItemRow.headline).where(NewsItemRow.event_id.in_(chunk))
        found.update({e: h for e, h in session.execute(stmt)})
    return found


def _existing_splits(session: Session, hashes: Sequence[str]) -> dict[str, str]:
    splits: dict[str, str] = {}
    for chunk in _chunks(hashes):
        stmt = select(LabelRow.text_hash, LabelRow.split).where(LabelRow.text_hash.in_(chunk)).distinct()
        for text_hash, split in session.execute(stmt):
            # Two splits for one text can only come from a concurrent first label; holding out wins.
            if splits.get(text_hash) != "recent_holdout":
                splits[text_hash] = split
    return splits


def record_labels(
    session: Session, labels: Iterable[NewLabel], *, now: datetime, recent_share: float
) -> LabelCounts:
    """Store labels (upsert on (text_hash, task, labeller)) in the caller's transaction.

    A label given by `event_id` alone takes the stored story's headline as its text. Labels
    that cannot be stored — an unknown event_id, task or class name, no labeller — are
    reported in `errors` (with their row number, 0 when not from a file) and skipped.
    """
    from bert_core import DEFAULT_LABELS, DataError, LabelSet, normalize_text
    from services.learning.labels import text_hash as hash_text

    label_sets = {task: LabelSet(task, names) for task, names in DEFAULT_LABELS.items()}
    counts = LabelCounts()
    batch = list(labels)
    lookups = {lab.event_id for lab in batch if lab.text is None and lab.event_id is not None}
    headlines = _headlines(session, lookups) if lookups else {}
    wanted: dict[tuple[str, str, str], dict[str, Any]] = {}
    for lab in batch:
        # Callers other than the import (the dashboard) skip parse_label_rows: a label that
        # training could not map back to a class id must not get in.
        label_set = label_sets.get(lab.task)  # type: ignore[call-overload]
        if label_set is None:
            counts.errors.append(RowError(lab.row or 0, f"unknown task {lab.task!r}"))
            continue
        try:
            label = label_set.names[label_set.to_id(lab.label)]
        except DataError as exc:
            counts.errors.append(RowError(lab.row or 0, str(exc)))
            continue
        if not lab.labeller.strip() or len(lab.labeller.strip()) > MAX_LABELLER:
            counts.errors.append(RowError(lab.row or 0, f"labeller must be 1-{MAX_LABELLER} characters"))
            continue
        raw = lab.text if lab.text is not None else headlines.get(lab.event_id or "")
        if raw is None:
            counts.errors.append(
                RowError(
                    lab.row or 0, f"no stored story with event_id {lab.event_id!r} to take the text from"
                )
            )
            continue
        text = normalize_text(raw)
        if not text:
            counts.errors.append(RowError(lab.row or 0, "text is empty after normalisation"))
            continue
        key = (hash_text(raw), lab.task, lab.labeller.strip())
        if key in wanted:
            counts.duplicates += 1
        wanted[key] = {
            "event_id": lab.event_id,
            "text": text,
            "text_hash": key[0],
            "task": lab.task,
            "label": label,
            "labeller": lab.labeller.strip(),
            "source": lab.source[:MAX_SOURCE],
        }
    if not wanted:
        return counts

    hashes = sorted({k[0] for k in wanted})
    splits = _existing_splits(session, hashes)
    existing: dict[tuple[str, str, str], LabelRow] = {}
    for chunk in _chunks(hashes):
        for row in session.scalars(select(LabelRow).where(LabelRow.text_hash.in_(chunk))):
            existing[(row.text_hash, row.task, row.labeller)] = row

    to_insert: list[dict[str, Any]] = []
    replaced_ids: list[int] = []
    for key, values in wanted.items():
        old = existing.get(key)
        if old is not None and old.label == values["label"]:
            counts.unchanged += 1
            continue
        split: Split = splits.get(key[0]) or split_for(key[0], recent_share)  # type: ignore[assignment]
        splits.setdefault(key[0], split)
        created = now
        if old is not None:
            counts.updated += 1
            replaced_ids.append(old.id)
            created = old.created_at
        else:
            counts.inserted += 1
        to_insert.append({**values, "split": split, "created_at": created, "updated_at": now})

    # A changed label must get an id above every earlier one. SQLite (INTEGER PRIMARY KEY, no
    # AUTOINCREMENT) reuses the highest id once it is deleted, so the old row moves aside
    # (its task is prefixed, keeping the unique key free) and is deleted after the insert.
    for chunk in _chunks(replaced_ids):
        session.execute(LABELS.update().where(LABELS.c.id.in_(chunk)).values(task="~" + LABELS.c.task))
    insert = dialect_insert(session)
    for chunk in _chunks(to_insert):
        stmt = insert(LABELS)
        # A concurrent writer may have stored the same key since we looked: theirs is replaced.
        stmt = stmt.on_conflict_do_update(
            index_elements=["text_hash", "task", "labeller"],
            set_={
                "label": stmt.excluded.label,
                "source": stmt.excluded.source,
                "event_id": stmt.excluded.event_id,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        session.execute(stmt, list(chunk))
    for chunk in _chunks(replaced_ids):
        session.execute(LABELS.delete().where(LABELS.c.id.in_(chunk)))
    session.expire_all()  # rows loaded above may be stale now
    return counts


def label_watermark(session: Session) -> int:
    """The highest label id so far (0 when there is none): a run's "seen up to" mark."""
    return int(session.scalar(select(func.coalesce(func.max(LabelRow.id), 0))) or 0)


def count_labels_after(session: Session, watermark: int, *, split: str | None = None) -> int:
    """Labels written (or changed) since `watermark`, optionally of one split only."""
    stmt = select(func.count()).select_from(LabelRow).where(LabelRow.id > watermark)
    if split is not None:
        stmt = stmt.where(LabelRow.split == split)
    return int(session.scalar(stmt) or 0)


def _resolve(rows: Iterable[LabelRow]) -> list[LabelledText]:
    """One example per text: majority label, ties to the newest; ordered by newest label first."""
    by_text: dict[str, list[LabelRow]] = {}
    for row in rows:
        by_text.setdefault(row.text_hash, []).append(row)
    resolved: list[LabelledText] = []
    for text_hash, group in by_text.items():
        group.sort(key=lambda r: r.id)
        votes = Counter(r.label for r in group)
        newest_of = {r.label: r.id for r in group}
        label = max(votes, key=lambda name: (votes[name], newest_of[name]))
        resolved.append(LabelledText(group[-1].text, text_hash, label, len(group), group[-1].id))
    resolved.sort(key=lambda t: t.last_id, reverse=True)
    return resolved


def training_labels(
    session: Session, *, task: str, after: int = 0, up_to: int | None = None
) -> list[LabelledText]:
    """Train-split texts with a label id in (after, up_to], each resolved over all of its
    labels up to `up_to` (so a new second opinion re-decides an older text's label)."""
    upper = [LabelRow.id <= up_to] if up_to is not None else []
    touched = (
        select(LabelRow.text_hash)
        .where(LabelRow.task == task, LabelRow.split == "train", LabelRow.id > after, *upper)
        .scalar_subquery()
    )
    stmt = select(LabelRow).where(
        LabelRow.task == task, LabelRow.split == "train", LabelRow.text_hash.in_(touched), *upper
    )
    return _resolve(session.scalars(stmt))


def recent_holdout(session: Session, *, task: str, newest: int) -> list[LabelledText]:
    """The `newest` most recently labelled texts of the recent holdout (never trained on)."""
    if newest <= 0:
        return []
    last = func.max(LabelRow.id).label("last")
    newest_texts = (
        select(LabelRow.text_hash, last)
        .where(LabelRow.task == task, LabelRow.split == "recent_holdout")
        .group_by(LabelRow.text_hash)
        .order_by(last.desc())
        .limit(newest)
        .subquery()
    )
    stmt = select(LabelRow).where(
        LabelRow.task == task,
        LabelRow.split == "recent_holdout",
        LabelRow.text_hash.in_(select(newest_texts.c.text_hash)),
    )
    return _resolve(session.scalars(stmt))


def to_labelled_data(task: str, examples: Sequence[LabelledText]) -> LabelledData:
    """Examples as bert_core's `LabelledData` (class ids in DEFAULT_LABELS order)."""
    from bert_core import DEFAULT_LABELS, LabelledData

    names = DEFAULT_LABELS[task]  # type: ignore[index]
    return LabelledData(task, [e.text for e in examples], [names.index(e.label) for e in examples])


def disagreements(session: Session, *, limit: int = 50, task: str | None = None) -> list[Disagreement]:
    """Texts whose analysts gave more than one distinct label for the same task, newest first."""
    last = func.max(LabelRow.updated_at).label("last")
    groups = select(LabelRow.text_hash, LabelRow.task, last).group_by(LabelRow.text_hash, LabelRow.task)
    if task is not None:
        groups = groups.where(LabelRow.task == task)
    groups = groups.having(func.count(distinct(LabelRow.label)) > 1).order_by(last.desc()).limit(limit)
    found = session.execute(groups).all()
    result: list[Disagreement] = []
    for text_hash, group_task, updated in found:
        rows = session.scalars(
            select(LabelRow)
            .where(LabelRow.text_hash == text_hash, LabelRow.task == group_task)
            .order_by(LabelRow.id)
        ).all()
        result.append(
            Disagreement(text_hash, group_task, rows[-1].text, {r.labeller: r.label for r in rows}, updated)
        )
    return result


def list_labels(
    session: Session, *, task: str | None = None, labeller: str | None = None, limit: int = 20
) -> list[StoredLabel]:
    """The newest labels first."""
    stmt = select(LabelRow).order_by(LabelRow.id.desc()).limit(limit)
    if task is not None:
        stmt = stmt.where(LabelRow.task == task)
    if labeller is not None:
        stmt = stmt.where(LabelRow.labeller == labeller)
    return [StoredLabel.of(row) for row in session.scalars(stmt)]


@dataclass(frozen=True)
class LabelStats:
    by_task_split: dict[tuple[str, str], int]  # (task, split) -> labels
    texts: dict[str, int]  # task -> distinct texts
    labellers: int
    disagreements: int
    watermark: int


def label_stats(session: Session) -> LabelStats:
    by_task_split = {
        (t, s): int(n)
        for t, s, n in session.execute(
            select(LabelRow.task, LabelRow.split, func.count()).group_by(LabelRow.task, LabelRow.split)
        )
    }
    texts = {
        t: int(n)
        for t, n in session.execute(
            select(LabelRow.task, func.count(distinct(LabelRow.text_hash))).group_by(LabelRow.task)
        )
    }
    labellers = int(session.scalar(select(func.count(distinct(LabelRow.labeller)))) or 0)
    disagreeing = (
        select(LabelRow.text_hash, LabelRow.task)
        .group_by(LabelRow.text_hash, LabelRow.task)
        .having(func.count(distinct(LabelRow.label)) > 1)
        .subquery()
    )
    n_disagreements = int(session.scalar(select(func.count()).select_from(disagreeing)) or 0)
    return LabelStats(by_task_split, texts, labellers, n_disagreements, label_watermark(session))
