"""Reading labelled/unlabelled files and the stratified dev split."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from bert_core import (
    SENTIMENT_LABELS,
    TOPIC_LABELS,
    DataError,
    LabelSet,
    read_labelled,
    read_table,
    read_texts,
    stratified_split,
)

SENT = LabelSet("sentiment", SENTIMENT_LABELS)
TOPIC = LabelSet("topic", TOPIC_LABELS)

ROWS = [
    ("$AAPL shares surge after earnings beat", "1"),
    ("Oil plunges as OPEC misses target", "bearish"),
    ("Fed holds rates &amp;amp; signals patience", "Neutral"),
    ("Bank stock slumps   https://t.co/xyz", 0),
]
EXPECTED_TEXTS = [
    "$AAPL shares surge after earnings beat",
    "Oil plunges as OPEC misses target",
    "Fed holds rates & signals patience",
    "Bank stock slumps",
]
EXPECTED_LABELS = [1, 0, 2, 0]


def _write_csv(path: Path, header: str, lines: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_csv(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    pd.DataFrame(ROWS, columns=["text", "label"]).to_csv(path, index=False)
    data = read_labelled(path, SENT)
    assert data.task == "sentiment"
    assert data.texts == EXPECTED_TEXTS
    assert data.labels == EXPECTED_LABELS
    assert len(data) == 4


def test_read_tsv(tmp_path: Path) -> None:
    path = tmp_path / "s.tsv"
    pd.DataFrame(ROWS, columns=["text", "label"]).to_csv(path, index=False, sep="\t")
    data = read_labelled(path, SENT)
    assert data.texts == EXPECTED_TEXTS
    assert data.labels == EXPECTED_LABELS


def test_read_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    lines = [json.dumps({"text": t, "label": lab, "id": i}) for i, (t, lab) in enumerate(ROWS)]
    # Blank lines between records are tolerated.
    path.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n", encoding="utf-8")
    data = read_labelled(path, SENT)
    assert data.texts == EXPECTED_TEXTS
    assert data.labels == EXPECTED_LABELS


def test_read_parquet_with_integer_labels_and_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    frame = pd.DataFrame(
        {
            "headline": ["Fed raises rates", "Gold &amp; silver rally", "Acme IPO prices"],
            "topic_id": [1, 10, 11],
        }
    )
    frame.to_parquet(path, index=False)
    data = read_labelled(path, TOPIC, text_column="headline", label_column="topic_id")
    assert data.texts == ["Fed raises rates", "Gold & silver rally", "Acme IPO prices"]
    assert data.labels == [1, 10, 11]


def test_read_parquet_with_label_names(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": ["Fed | Central Banks", "ipo"]}).to_parquet(path)
    assert read_labelled(path, TOPIC).labels == [1, 11]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="no such file") as info:
        read_labelled(missing, SENT)
    assert str(missing) in str(info.value)


def test_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"whatever")
    with pytest.raises(DataError, match="unsupported format"):
        read_table(path)


def test_missing_column_names_column_and_found_columns(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "s.csv", "headline,label", ["stocks up,1"])
    with pytest.raises(DataError) as info:
        read_labelled(path, SENT)
    message = str(info.value)
    assert "missing column 'text'" in message
    assert "found: headline, label" in message
    assert str(path) in message


def test_missing_label_column(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "s.csv", "text,sentiment", ["stocks up,1"])
    with pytest.raises(DataError, match=r"missing column 'label' \(found: text, sentiment\)"):
        read_labelled(path, SENT)


def test_unknown_label_names_file_and_row(tmp_path: Path) -> None:
    # Header is row 1, so the second data row is row 3.
    path = _write_csv(tmp_path / "s.csv", "text,label", ["stocks up,bullish", "stocks flat,sideways"])
    with pytest.raises(DataError) as info:
        read_labelled(path, SENT)
    message = str(info.value)
    assert str(path) in message
    assert "row 3" in message
    assert "sideways" in message
    assert "bearish, bullish, neutral" in message


def test_out_of_range_label_names_row(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "t.csv", "text,label", ["a,0", "b,1", "c,20"])
    with pytest.raises(DataError, match=r"row 4: topic label id 20 is out of range 0-19"):
        read_labelled(path, TOPIC)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nstocks up,1\ncaf\u00e9 shares fall,0\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8") as info:
        read_labelled(path, SENT)
    assert "line 3" in str(info.value)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefftext,label\ncaf\u00e9 shares fall,0\n".encode())
    data = read_labelled(path, SENT)
    assert data.texts == ["caf\u00e9 shares fall"]


def test_invalid_jsonl_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"s\.jsonl:2: invalid JSON"):
        read_labelled(path, SENT)


def test_empty_texts_are_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write_csv(
        tmp_path / "s.csv",
        "text,label",
        ["stocks up,1", ",0", "https://t.co/only-a-link,2", "oil down,0"],
    )
    with caplog.at_level(logging.WARNING, logger="bert_core.data"):
        data = read_labelled(path, SENT)
    assert data.texts == ["stocks up", "oil down"]
    assert data.labels == [1, 0]
    assert "skipped 2 row(s)" in caplog.text
    assert "rows 3, 4" in caplog.text


def test_empty_text_is_an_error_without_skip(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "s.csv", "text,label", ["stocks up,1", "   ,0"])
    with pytest.raises(DataError, match=r"row 3: text is empty"):
        read_labelled(path, SENT, skip_empty=False)


def test_file_with_only_empty_texts_is_an_error(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "s.csv", "text,label", [",1", "https://x.co/a,0"])
    with pytest.raises(DataError, match="no rows with text"):
        read_labelled(path, SENT)


def test_non_string_text_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "ok", "label": 1}\n{"text": 5, "label": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match="not a string"):
        read_labelled(path, SENT)


def test_read_texts_from_txt(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text(
        "Stocks rally &amp; bonds slip\n\n   \nhttps://t.co/only\n  Oil   up  \n", encoding="utf-8"
    )
    assert read_texts(path) == ["Stocks rally & bonds slip", "Oil up"]


def test_read_texts_from_table_with_named_column(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "c.csv", "id,headline", ["1,Gold rises", "2,", "3,Yen  falls"])
    assert read_texts(path, text_column="headline") == ["Gold rises", "Yen falls"]
    with pytest.raises(DataError, match="missing column 'body'"):
        read_texts(path, text_column="body")


def test_read_texts_prefers_the_text_column(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "c.csv", "id,text", ["1,Gold rises", "2,Yen falls"])
    assert read_texts(path) == ["Gold rises", "Yen falls"]


def test_read_texts_finds_the_string_column(tmp_path: Path) -> None:
    # No "text" column: the first column holding strings is used (ids are numbers here).
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"id": 1, "headline": "Gold rises"}\n{"id": 2, "headline": "Yen  falls"}\n', encoding="utf-8"
    )
    assert read_texts(path) == ["Gold rises", "Yen falls"]


def test_read_texts_without_any_string_column(tmp_path: Path) -> None:
    path = tmp_path / "n.parquet"
    pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}).to_parquet(path)
    with pytest.raises(DataError, match="no text column"):
        read_texts(path)


def test_content_hash_identifies_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    pd.DataFrame(ROWS, columns=["text", "label"]).to_csv(path, index=False)
    data = read_labelled(path, SENT)
    assert data.content_hash() == read_labelled(path, SENT).content_hash()
    changed = data.subset([0, 1, 2, 3])
    assert changed.content_hash() == data.content_hash()
    assert data.subset([1, 0, 2, 3]).content_hash() != data.content_hash()
    assert data.subset([0, 1, 2]).content_hash() != data.content_hash()


# ------------------------------------------------------------------ stratified split

# 50/30/15/2/1 rows for classes 0-4, interleaved so class and position are unrelated.
SPLIT_LABELS = [0] * 50 + [1] * 30 + [2] * 15 + [3] * 2 + [4] * 1
SPLIT_LABELS = [SPLIT_LABELS[(i * 37) % 98] for i in range(98)]  # 37 is coprime with 98


def test_split_is_deterministic_for_a_seed() -> None:
    first = stratified_split(SPLIT_LABELS, dev_fraction=0.2, seed=7)
    second = stratified_split(SPLIT_LABELS, dev_fraction=0.2, seed=7)
    other = stratified_split(SPLIT_LABELS, dev_fraction=0.2, seed=8)
    assert first == second
    assert first[1] != other[1]


def test_split_is_disjoint_and_covers_all_rows() -> None:
    train, dev = stratified_split(SPLIT_LABELS, dev_fraction=0.2, seed=0)
    assert set(train).isdisjoint(dev)
    assert sorted(train + dev) == list(range(len(SPLIT_LABELS)))
    assert train == sorted(train)
    assert dev == sorted(dev)


def test_split_keeps_class_shares() -> None:
    train, dev = stratified_split(SPLIT_LABELS, dev_fraction=0.2, seed=0)
    dev_counts = Counter(SPLIT_LABELS[i] for i in dev)
    train_counts = Counter(SPLIT_LABELS[i] for i in train)
    # round(n * 0.2) per class, at least one for classes with two or more rows,
    # and never the only row of a class.
    assert dev_counts == {0: 10, 1: 6, 2: 3, 3: 1}
    assert train_counts == {0: 40, 1: 24, 2: 12, 3: 1, 4: 1}


def test_every_class_with_two_rows_is_in_dev() -> None:
    labels = [0] * 40 + [1] * 3 + [2] * 2
    for seed in range(5):
        _, dev = stratified_split(labels, dev_fraction=0.05, seed=seed)
        assert {labels[i] for i in dev} == {0, 1, 2}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(DataError, match="dev fraction"):
        stratified_split([0, 1, 0, 1], dev_fraction=fraction, seed=0)
