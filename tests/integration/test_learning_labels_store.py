"""The label store on PostgreSQL and SQLite: file imports with bad rows, relabels, splits,
the training and recent-holdout views, and disagreements."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from services.learning.label_import import (
    ImportReport,
    StrictImportError,
    import_labels,
    read_label_file,
)
from services.learning.label_store import (
    count_labels_after,
    disagreements,
    label_stats,
    label_watermark,
    list_labels,
    recent_holdout,
    record_labels,
    to_labelled_data,
    training_labels,
)
from services.learning.labels import NewLabel, RowError, split_for, text_hash
from services.storage import (
    LabelRow,
    NewsItemRow,
    session_factory,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SHARE = 0.2


@pytest.fixture
def engine(engine: Engine) -> Iterator[Engine]:
    """The emptied database with two stored stories to label."""
    with session_factory(engine).begin() as session:
        for i, headline in enumerate(["Acme shares plunge after profit warning", "Fed holds rates steady"]):
            session.add(
                NewsItemRow(
                    event_id=f"ev-{i}",
                    headline=headline + " https://t.co/x",
                    published_at=T0,
                    received_at=T0,
                    tickers=[],
                    extra={},
                )
            )
    yield engine


def import_file(engine: Engine, path: Path, *, now: datetime = T0, strict: bool = False) -> ImportReport:
    with session_factory(engine).begin() as session:
        return import_labels(
            session,
            read_label_file(path),
            name=path.name,
            default_labeller="alice",
            source=f"import:{path.name}",
            now=now,
            recent_share=SHARE,
            strict=strict,
        )


def all_labels(engine: Engine) -> list[LabelRow]:
    with Session(engine) as session:
        return list(session.scalars(select(LabelRow).order_by(LabelRow.id)))


def test_csv_and_jsonl_imports_store_good_rows_and_report_bad_ones(engine: Engine, tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(
        "text,event_id,task,label,labeller\n"
        "Oil jumps as OPEC cuts output,,topic,Energy / Oil,\n"  # row 2
        ",ev-0,sentiment,bearish,bob\n"  # row 3: text from the stored headline
        ",ev-9,sentiment,bearish,bob\n"  # row 4: unknown event_id
        "Gold slips,,topic,Gold,\n"  # row 5: unknown topic name
        "Gold slips,,sentiment,7,\n",  # row 6: id out of range
        encoding="utf-8",
    )
    report = import_file(engine, csv_file)
    assert (report.rows, report.counts.inserted, report.counts.updated) == (5, 2, 0)
    assert [e.row for e in report.errors] == [4, 5, 6]
    assert report.errors[0] == RowError(4, "no stored story with event_id 'ev-9' to take the text from")
    assert "unknown topic label 'Gold'" in report.errors[1].message
    assert "sentiment label id 7 is out of range 0-2" in report.errors[2].message

    jsonl_file = tmp_path / "more.jsonl"
    jsonl_file.write_text(
        "\n".join(
            [
                json.dumps({"event_id": "ev-1", "task": "topic", "label": 1, "labeller": "carol"}),
                "not json",
                json.dumps({"text": "Fed hikes rates", "task": "sentiment", "label": "BEARISH"}),
                json.dumps({"text": "", "task": "topic", "label": 1}),
            ]
        ),
        encoding="utf-8",
    )
    report = import_file(engine, jsonl_file)
    assert (report.rows, report.counts.inserted) == (4, 2)
    assert [(e.row, e.message.split(" (")[0]) for e in report.errors] == [
        (2, "invalid JSON"),
        (4, "needs a text or an event_id"),
    ]

    rows = all_labels(engine)
    got = {(r.text, r.task, r.label, r.labeller, r.event_id, r.source) for r in rows}
    assert got == {
        ("Oil jumps as OPEC cuts output", "topic", "Energy / Oil", "alice", None, "import:labels.csv"),
        (
            "Acme shares plunge after profit warning",
            "sentiment",
            "bearish",
            "bob",
            "ev-0",
            "import:labels.csv",
        ),
        ("Fed holds rates steady", "topic", "Fed / Central Banks", "carol", "ev-1", "import:more.jsonl"),
        ("Fed hikes rates", "sentiment", "bearish", "alice", None, "import:more.jsonl"),
    }
    for row in rows:
        assert row.text_hash == text_hash(row.text)
        assert row.split == split_for(row.text_hash, SHARE)
        assert row.created_at == row.updated_at == T0


def test_strict_import_stores_nothing_when_a_row_is_bad(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("text,event_id,task,label\nGood one,,topic,1\n,ev-404,topic,2\n", encoding="utf-8")
    with pytest.raises(StrictImportError) as info:
        import_file(engine, path, strict=True)
    assert info.value.report.errors == [
        RowError(3, "no stored story with event_id 'ev-404' to take the text from")
    ]
    assert all_labels(engine) == []
    path.write_text("text,task,label\nGood one,topic,1\nBad one,topic,x\n", encoding="utf-8")
    with pytest.raises(StrictImportError):
        import_file(engine, path, strict=True)
    assert all_labels(engine) == []


def test_relabel_replaces_the_labellers_label_with_a_new_id(engine: Engine) -> None:
    def record(*labels: NewLabel, now: datetime) -> tuple[int, int, int, int]:
        with session_factory(engine).begin() as session:
            c = record_labels(session, labels, now=now, recent_share=SHARE)
            return c.inserted, c.updated, c.unchanged, c.duplicates

    first = NewLabel("sentiment", "bullish", "alice", "dashboard", text="Acme beats estimates")
    assert record(first, now=T0) == (1, 0, 0, 0)
    with Session(engine) as session:
        watermark = label_watermark(session)
    assert record(first, now=T0 + timedelta(hours=1)) == (0, 0, 1, 0)  # same label: nothing changes
    with Session(engine) as session:
        assert count_labels_after(session, watermark) == 0

    changed = NewLabel(
        "sentiment", "neutral", "alice", "dashboard", text="Acme  beats estimates https://x.co/1"
    )
    other = NewLabel("sentiment", "bullish", "bob", "dashboard", text="Acme beats estimates")
    assert record(changed, other, now=T0 + timedelta(hours=2)) == (1, 1, 0, 0)
    rows = all_labels(engine)
    assert [(r.labeller, r.label) for r in rows] == [("alice", "neutral"), ("bob", "bullish")]
    alice = rows[0]
    assert alice.id > watermark and alice.created_at == T0 and alice.updated_at == T0 + timedelta(hours=2)
    with Session(engine) as session:
        assert count_labels_after(session, watermark) == 2  # the correction counts as new

    # Within one batch the later row for the same (text, task, labeller) wins.
    a = NewLabel("topic", "IPO", "alice", "x", text="Hooli debut")
    b = NewLabel("topic", "Markets", "alice", "x", text="Hooli debut")
    assert record(a, b, now=T0 + timedelta(hours=3)) == (1, 0, 0, 1)
    assert [r.label for r in all_labels(engine) if r.task == "topic"] == ["Markets"]


def test_a_text_keeps_its_first_split_for_every_task_and_share(engine: Engine) -> None:
    texts = [f"Initech quarterly update number {i}" for i in range(200)]
    with session_factory(engine).begin() as session:
        record_labels(
            session,
            [NewLabel("sentiment", "neutral", "a", "t", text=t) for t in texts],
            now=T0,
            recent_share=0.5,
        )
    with session_factory(engine).begin() as session:  # the share changed; later labels follow the text
        record_labels(
            session,
            [NewLabel("topic", "Markets", "b", "t", text=t) for t in texts],
            now=T0 + timedelta(minutes=1),
            recent_share=0.0,
        )
    splits: dict[str, set[str]] = {}
    for row in all_labels(engine):
        splits.setdefault(row.text_hash, set()).add(row.split)
    assert all(len(s) == 1 for s in splits.values())
    held = sum(1 for s in splits.values() if s == {"recent_holdout"})
    assert 70 < held < 130, held  # about half, as the first share said


def test_training_and_recent_holdout_views(engine: Engine) -> None:
    train_text = next(
        t
        for t in (f"Umbrella shares move {i}" for i in range(100))
        if split_for(text_hash(t), SHARE) == "train"
    )
    held_texts = [
        t
        for t in (f"Stark earnings {i}" for i in range(200))
        if split_for(text_hash(t), SHARE) == "recent_holdout"
    ][:5]
    assert len(held_texts) == 5

    def record(*labels: NewLabel, minute: int) -> None:
        with session_factory(engine).begin() as session:
            record_labels(session, labels, now=T0 + timedelta(minutes=minute), recent_share=SHARE)

    record(NewLabel("sentiment", "bearish", "a", "t", text=train_text), minute=0)
    for i, text in enumerate(held_texts):
        record(NewLabel("sentiment", "bullish", "a", "t", text=text), minute=1 + i)
    with Session(engine) as session:
        mark = label_watermark(session)
    record(
        NewLabel("sentiment", "neutral", "b", "t", text=train_text),
        NewLabel("sentiment", "neutral", "c", "t", text=train_text),
        minute=10,
    )
    with Session(engine) as session:
        everything = training_labels(session, task="sentiment")
        assert [(e.text, e.label, e.labellers) for e in everything] == [(train_text, "neutral", 3)]
        before = training_labels(session, task="sentiment", up_to=mark)
        assert [(e.label, e.labellers) for e in before] == [("bearish", 1)]
        assert [e.text for e in training_labels(session, task="sentiment", after=mark)] == [train_text]
        assert training_labels(session, task="topic") == []

        newest = recent_holdout(session, task="sentiment", newest=3)
        assert [e.text for e in newest] == held_texts[::-1][:3]
        assert all(e.label == "bullish" for e in newest)
        assert len(recent_holdout(session, task="sentiment", newest=50)) == 5
        data = to_labelled_data("sentiment", newest)
        assert data.labels == [1, 1, 1] and data.texts == [e.text for e in newest]
        assert count_labels_after(session, 0, split="recent_holdout") == 5


def test_ties_go_to_the_newest_label(engine: Engine) -> None:
    text = next(
        t for t in (f"Wayne deal {i}" for i in range(100)) if split_for(text_hash(t), SHARE) == "train"
    )
    for minute, (who, label) in enumerate([("a", "IPO"), ("b", "Markets")]):
        with session_factory(engine).begin() as session:
            record_labels(
                session,
                [NewLabel("topic", label, who, "t", text=text)],
                now=T0 + timedelta(minutes=minute),
                recent_share=SHARE,
            )
    with Session(engine) as session:
        assert [e.label for e in training_labels(session, task="topic")] == ["Markets"]


def test_disagreements_list_stats(engine: Engine) -> None:
    labels = [
        NewLabel("sentiment", "bearish", "alice", "t", text="Acme misses"),
        NewLabel("sentiment", "neutral", "bob", "t", text="Acme misses"),
        NewLabel("topic", "Earnings", "alice", "t", text="Acme misses"),
        NewLabel("topic", "Earnings", "bob", "t", text="Acme misses"),  # agreement: not listed
        NewLabel("sentiment", "bullish", "alice", "t", text="Acme beats"),
    ]
    with session_factory(engine).begin() as session:
        record_labels(session, labels, now=T0, recent_share=SHARE)
    with Session(engine) as session:
        [found] = disagreements(session, limit=10)
        assert (found.task, found.text, found.labels) == (
            "sentiment",
            "Acme misses",
            {"alice": "bearish", "bob": "neutral"},
        )
        assert disagreements(session, task="topic") == []
        newest = list_labels(session, limit=2)
        assert [r.text for r in newest] == ["Acme beats", "Acme misses"]
        assert len(list_labels(session, labeller="bob")) == 2
        stats = label_stats(session)
        assert stats.labellers == 2 and stats.disagreements == 1
        assert sum(stats.by_task_split.values()) == 5
        assert stats.texts == {"sentiment": 2, "topic": 1}
        assert stats.watermark == label_watermark(session) > 0


def test_direct_callers_are_validated_too(engine: Engine) -> None:
    """The dashboard calls record_labels without parse_label_rows: names are canonicalised
    and anything training could not use is refused, not stored."""
    labels = [
        NewLabel("topic", "fed | central banks", "ann", "dashboard", text="Fed holds", row=1),
        NewLabel("topic", "Weather", "ann", "dashboard", text="Storm", row=2),
        NewLabel("mood", "happy", "ann", "dashboard", text="Storm", row=3),
        NewLabel("sentiment", "bearish", "  ", "dashboard", text="Storm", row=4),
        NewLabel("sentiment", "bearish", "ann", "dashboard", event_id="ev-0", row=5),
    ]
    with session_factory(engine).begin() as session:
        counts = record_labels(session, labels, now=T0, recent_share=SHARE)
    assert counts.inserted == 2
    assert [(e.row, e.message.split(";")[0]) for e in counts.errors] == [
        (2, "unknown topic label 'Weather'"),
        (3, "unknown task 'mood'"),
        (4, "labeller must be 1-200 characters"),
    ]
    assert sorted((r.task, r.label, r.text) for r in all_labels(engine)) == [
        ("sentiment", "bearish", "Acme shares plunge after profit warning"),
        ("topic", "Fed / Central Banks", "Fed holds"),
    ]
