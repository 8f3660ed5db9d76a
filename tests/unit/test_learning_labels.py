"""Label identity, the deterministic split, and import validation (services.learning.labels,
and the file reader of services.learning.label_import)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bert_core.labels import TOPIC_LABELS
from services.learning.label_import import LabelFileError, parse_label_file, read_label_file
from services.learning.labels import NewLabel, RowError, parse_label_rows, split_for, text_hash


def test_text_hash_is_of_the_normalised_text() -> None:
    a = text_hash("Oil  jumps &amp;amp; gold falls https://t.co/abc")
    assert a == text_hash("Oil jumps & gold falls")
    assert a == hashlib.sha256(b"Oil jumps & gold falls").hexdigest()
    assert a != text_hash("oil jumps & gold falls")  # case carries meaning ($AAPL vs aapl): kept


def test_split_is_deterministic_and_close_to_the_share() -> None:
    hashes = [text_hash(f"headline number {i}") for i in range(4000)]
    splits = [split_for(h, 0.2) for h in hashes]
    assert splits == [split_for(h, 0.2) for h in hashes]
    share = splits.count("recent_holdout") / len(splits)
    assert 0.17 < share < 0.23, share
    assert {split_for(h, 0.0) for h in hashes} == {"train"}
    # Boundaries: the first 8 hex digits, as a fraction of 2**32.
    assert split_for("33333332" + "0" * 56, 0.2) == "recent_holdout"
    assert split_for("33333334" + "0" * 56, 0.2) == "train"
    with pytest.raises(ValueError, match="recent_share"):
        split_for(hashes[0], 1.0)


def test_parse_accepts_ids_and_names_in_any_case() -> None:
    rows = [
        {"text": "Fed holds rates", "task": "Topic", "label": "fed | central banks"},
        {"text": "Stocks fall", "task": "sentiment", "label": "0"},
        {"event_id": "ev-1", "task": "SENTIMENT", "label": "Bullish", "labeller": "bob"},
        {"text": "Oil up", "task": "topic", "label": 6},  # a JSON number
    ]
    labels, errors = parse_label_rows(rows, default_labeller="alice", source="import:x.csv", start=2)
    assert errors == []
    assert labels == [
        NewLabel("topic", "Fed / Central Banks", "alice", "import:x.csv", text="Fed holds rates", row=2),
        NewLabel("sentiment", "bearish", "alice", "import:x.csv", text="Stocks fall", row=3),
        NewLabel("sentiment", "bullish", "bob", "import:x.csv", event_id="ev-1", row=4),
        NewLabel("topic", TOPIC_LABELS[6], "alice", "import:x.csv", text="Oil up", row=5),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"task": "topic", "label": "IPO"}, "needs a text or an event_id"),
        ({"text": "  ", "event_id": "", "task": "topic", "label": "IPO"}, "needs a text or an event_id"),
        ({"text": "https://t.co/xyz", "task": "topic", "label": "IPO"}, "text is empty"),
        ({"text": "x", "label": "IPO"}, "task is empty; expected one of: topic, sentiment"),
        ({"text": "x", "task": "tone", "label": "IPO"}, "unknown task 'tone'"),
        ({"text": "x", "task": "topic", "label": ""}, "topic label is empty"),
        ({"text": "x", "task": "sentiment", "label": "positive"}, "unknown sentiment label 'positive'"),
        ({"text": "x", "task": "sentiment", "label": "3"}, "sentiment label id 3 is out of range 0-2"),
        ({"text": "x", "task": "topic", "label": "-1"}, "topic label id -1 is out of range 0-19"),
        (
            {"text": "x", "task": "topic", "label": "IPO", "labeller": "x" * 201},
            "labeller is longer than 200",
        ),
        ({"event_id": "e" * 129, "task": "topic", "label": "IPO"}, "event_id is longer than 128"),
    ],
)
def test_each_bad_row_is_an_error_with_its_number(row: dict[str, object], message: str) -> None:
    good = {"text": "fine", "task": "topic", "label": "IPO"}
    labels, errors = parse_label_rows([good, row, good], default_labeller="alice", start=2)
    assert [lab.row for lab in labels] == [2, 4]
    assert len(errors) == 1 and errors[0].row == 3
    assert message in errors[0].message, errors[0].message


def test_unknown_label_names_the_choices() -> None:
    _, [error] = parse_label_rows([{"text": "x", "task": "sentiment", "label": "good"}], default_labeller="a")
    assert str(error) == (
        "row 1: unknown sentiment label 'good'; expected an id 0-2 or one of: bearish, bullish, neutral"
    )


def test_a_labeller_is_required_from_the_row_or_the_default() -> None:
    labels, errors = parse_label_rows(
        [
            {"text": "x", "task": "topic", "label": "IPO"},
            {"text": "y", "task": "topic", "label": 1, "labeller": "eve"},
        ]
    )
    assert errors == [RowError(1, "no labeller: add a labeller column or give a default labeller")]
    assert [lab.labeller for lab in labels] == ["eve"]


def test_row_numbers_from_the_reader() -> None:
    labels, errors = parse_label_rows(
        [{"text": "x", "task": "topic", "label": 1}, {"text": "y"}], default_labeller="a", row_numbers=[3, 7]
    )
    assert labels[0].row == 3 and errors[0].row == 7


def test_csv_file_rows_are_numbered_as_in_a_spreadsheet() -> None:
    content = (
        b"text,task,label,labeller,comment\n"
        b'Fed holds,topic,1,ann,"a, b"\n'
        b"Oil up,topic,6,ann,x,extra\n"
        b'"two\nlines",sentiment,bearish,,\n'
    )
    parsed = parse_label_file(content, name="labels.csv")
    assert parsed.columns == ["text", "task", "label", "labeller", "comment"]
    assert [n for n, _ in parsed.rows] == [2, 4]
    assert parsed.errors == [
        RowError(3, "6 fields but the header has 5 (quote texts that contain the delimiter)")
    ]
    labels, errors = parse_label_rows(
        (r for _, r in parsed.rows), default_labeller="me", row_numbers=(n for n, _ in parsed.rows)
    )
    assert errors == [] and [(lab.row, lab.labeller) for lab in labels] == [(2, "ann"), (4, "me")]


def test_csv_rows_are_numbered_by_the_line_they_start_on() -> None:
    """A blank line counts (csv skips it silently) and a quoted cell may span lines: the
    number is where the record starts, not how many records came before."""
    content = (
        b"text,task,label\n"  # 1
        b"fine,topic,1\n"  # 2
        b"\n"  # 3: blank
        b'"two\nlines",sentiment,bearish\n'  # 4-5
        b"bad,sentiment,positive\n"  # 6
        b"x,topic,1,extra\n"  # 7
        b'"a\r\nb",topic,IPO\r\n'  # 8-9
        b"last,topic,nope\n"  # 10
    )
    parsed = parse_label_file(content, name="labels.csv")
    assert [n for n, _ in parsed.rows] == [2, 4, 6, 8, 10]
    assert [e.row for e in parsed.errors] == [7]
    _, errors = parse_label_rows(
        (r for _, r in parsed.rows), default_labeller="me", row_numbers=(n for n, _ in parsed.rows)
    )
    assert [e.row for e in errors] == [6, 10]


def test_an_unterminated_quote_rejects_its_row_and_the_rest_are_read_as_rows() -> None:
    content = (
        b"text,task,label\n"  # 1
        b"fine,topic,1\n"  # 2
        b'"never closed,sentiment,0\n'  # 3
        b"next,topic,2\n"  # 4
        b"last,sentiment,1\n"  # 5
    )
    parsed = parse_label_file(content, name="labels.csv")
    assert [(n, r["text"]) for n, r in parsed.rows] == [(2, "fine"), (4, "next"), (5, "last")]
    assert [e.row for e in parsed.errors] == [3]
    assert "never closed" in parsed.errors[0].message


def test_an_unterminated_quote_on_the_last_line_without_a_newline() -> None:
    parsed = parse_label_file(b'text,task,label\nfine,topic,1\n"open,topic,2', name="labels.csv")
    assert [n for n, _ in parsed.rows] == [2]
    assert [e.row for e in parsed.errors] == [3]


def test_a_quote_closed_rows_later_does_not_swallow_them() -> None:
    """The lenient reader closes the stray quote at the next quote it meets (`"rises"`), so
    the record has three plausible fields: the swallowed row is recognised by its delimiters."""
    content = (
        b"text,task,label\n"  # 1
        b'"Acme misses,sentiment,0\n'  # 2
        b'Tesla "rises",sentiment,bullish\n'  # 3
        b"Gold,topic,10\n"  # 4
    )
    parsed = parse_label_file(content, name="labels.csv")
    assert [(n, r["text"]) for n, r in parsed.rows] == [(3, 'Tesla "rises"'), (4, "Gold")]
    assert [(e.row, e.message.split(";")[0]) for e in parsed.errors] == [
        (2, "a quoted cell takes in the next 1 line(s), which look like rows of their own")
    ]


def test_a_quoted_cell_with_line_breaks_and_a_comma_is_still_one_text() -> None:
    content = b'text,task,label\n"Oil, gas\nand coal rally",topic,6\n'
    parsed = parse_label_file(content, name="labels.csv")
    assert [(n, r["text"]) for n, r in parsed.rows] == [(2, "Oil, gas\nand coal rally")]
    assert parsed.errors == []
    tsv = parse_label_file(
        b'text\ttask\tlabel\n"a\nb"\ttopic\t1\n"open\ttopic\t2\nc\ttopic\t3\n', name="labels.tsv"
    )
    assert [(n, r["text"]) for n, r in tsv.rows] == [(2, "a\nb"), (5, "c")]
    assert [e.row for e in tsv.errors] == [4]


def test_a_blank_line_before_the_header_is_skipped() -> None:
    parsed = parse_label_file(b"\ntext,task,label\nx,topic,1\n", name="labels.csv")
    assert parsed.columns == ["text", "task", "label"] and [n for n, _ in parsed.rows] == [3]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # A header of other columns names them, even with no row under it.
        (b"foo,bar\n", "labels.csv: missing column(s) text or event_id, task, label (found: foo, bar)"),
        (b"text,label\n", "labels.csv: missing column(s) task (found: text, label)"),
        (b"text,task,label\n", "labels.csv: no rows"),
        (b"", "labels.csv: no rows"),
    ],
)
def test_a_header_only_file_says_what_is_wrong_with_it(content: bytes, message: str) -> None:
    with pytest.raises(LabelFileError) as caught:
        parse_label_file(content, name="labels.csv")
    assert str(caught.value) == message


def test_an_unreadable_label_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LabelFileError, match="is a directory"):
        read_label_file(tmp_path)
    with pytest.raises(LabelFileError, match="no such file"):
        read_label_file(tmp_path / "missing.csv")
    locked = tmp_path / "locked.csv"
    locked.write_text("text,task,label\nx,topic,1\n", encoding="utf-8")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod 000 does not stop root
    with pytest.raises(LabelFileError) as info:
        read_label_file(locked)
    assert str(info.value) == f"{locked}: cannot read the file (Permission denied)"


def test_jsonl_file_rows_are_numbered_by_line() -> None:
    content = (
        b'{"text": "a", "task": "topic", "label": 1}\n\n[1, 2]\n{oops\n'
        b'{"event_id": "e", "task": "sentiment", "label": 2}\n'
    )
    parsed = parse_label_file(content, name="labels.jsonl")
    assert [n for n, _ in parsed.rows] == [1, 5]
    assert [(e.row, e.message.split(" (")[0]) for e in parsed.errors] == [
        (3, "expected a JSON object, got list"),
        (4, "invalid JSON"),
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("labels.xlsx", b"x", "unsupported format '.xlsx'"),
        ("labels.csv", b"\xff\xfetext", "not valid UTF-8 (line 1)"),
        ("labels.csv", b"", "no rows"),
        ("labels.csv", b"text,label\nx,1\n", "missing column(s) task (found: text, label)"),
        ("labels.csv", b"headline,task,label\nx,topic,1\n", "missing column(s) text or event_id"),
        ("labels.json", b"[{", "invalid JSON (line 1"),
    ],
)
def test_file_level_problems_stop_the_import(name: str, content: bytes, message: str) -> None:
    with pytest.raises(LabelFileError) as info:
        parse_label_file(content, name=name)
    assert message in str(info.value), str(info.value)
    assert str(info.value).startswith(name)
