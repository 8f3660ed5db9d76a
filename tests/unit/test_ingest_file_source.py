"""News files (JSONL, CSV) into news.raw dicts, and `replay` with a fake producer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.ingest.encoding import EncodedNews, encode_news
from services.ingest.file_source import (
    FileRecord,
    NewsFileError,
    count_records,
    csv_row_to_item,
    read_news_file,
    split_tickers,
)
from services.ingest.replay import replay
from services.schemas import InvalidMessage, derive_event_id


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[EncodedNews] = []
        self.flushes = 0

    def send_encoded(self, encoded: EncodedNews) -> None:
        self.sent.append(encoded)

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def deliver(self, batch: Any, *, timeout: float) -> None:
        self.sent.extend(batch)


def test_jsonl_rows_with_line_numbers_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"id": 1, "headline": "Fed holds rates"}\n'
        b"\n"
        b'{"headline": "bad json"\n'
        b"[1, 2]\n"
        b'{"headline": "caf\xe9"}\n'
        b'{"headline": "$AAPL beats", "tickers": ["AAPL"], "desk": "us"}\n'
    )
    records = list(read_news_file(path))
    assert [(r.line, r.item) for r in records if r.item is not None] == [
        (1, {"id": 1, "headline": "Fed holds rates"}),
        (6, {"headline": "$AAPL beats", "tickers": ["AAPL"], "desk": "us"}),
    ]
    errors = {r.line: r.error for r in records if r.item is None}
    assert errors[3] is not None and errors[3].startswith("not valid JSON")
    assert errors[4] == "not a JSON object (got list)"
    assert errors[5] == "not valid UTF-8 (byte 0xe9)"
    assert count_records(path) == 5  # non-blank lines


def test_csv_columns_map_to_schema_fields(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text(
        "\ufeffID,Text,body,source,url,published_at,tickers,desk,\n"
        '7,"Oil slumps, OPEC adds supply",,wire,https://x/1,2025-01-02T10:00:00Z,XOM; CVX,energy,\n'
        ",$AAPL beats,Strong quarter,,,,AAPL,,\n"
        ",,,wire,,,,,\n",
        encoding="utf-8",
    )
    records = list(read_news_file(path))
    assert [r.item for r in records] == [
        {
            "headline": "Oil slumps, OPEC adds supply",
            "id": "7",
            "source": "wire",
            "url": "https://x/1",
            "published_at": "2025-01-02T10:00:00Z",
            "tickers": ["XOM", "CVX"],
            "desk": "energy",
        },
        {"headline": "$AAPL beats", "body": "Strong quarter", "tickers": ["AAPL"]},
        {"source": "wire"},  # no headline: the schema rejects it when it is sent
    ]
    assert [r.line for r in records] == [2, 3, 4]
    assert count_records(path) == 3


def test_csv_headline_column_preference() -> None:
    item = csv_row_to_item({"headline": "H", "text": "T", "title": "X"})
    assert item == {"headline": "H", "text": "T", "title": "X"}  # the others stay as extra fields
    assert csv_row_to_item({"title": "X"}) == {"headline": "X"}


@pytest.mark.parametrize(
    ("value", "tickers"),
    [("AAPL;MSFT", ["AAPL", "MSFT"]), ("AAPL, MSFT", ["AAPL", "MSFT"]), (" ; ,", []), ("BRK.B", ["BRK.B"])],
)
def test_split_tickers(value: str, tickers: list[str]) -> None:
    assert split_tickers(value) == tickers


def test_csv_row_with_too_many_fields_is_an_error_record(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text("headline,source\nA,wire\nB,wire,extra\n", encoding="utf-8")
    records = list(read_news_file(path))
    assert records[0] == FileRecord(2, {"headline": "A", "source": "wire"})
    assert records[1] == FileRecord(3, None, "row has more fields than the header")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("news.csv", b"label,source\n1,wire\n", "no headline column"),
        ("news.csv", b"headline\ncaf\xe9\n", "not valid UTF-8"),
        ("news.txt", b"headline\n", "unsupported file type '.txt'"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NewsFileError, match=message):
        list(read_news_file(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NewsFileError, match="no such file"):
        list(read_news_file(tmp_path / "absent.jsonl"))


def test_encode_news_keys_by_the_schema_event_id() -> None:
    item = {"headline": " Fed holds rates ", "source": "wire", "url": "https://x/1"}
    encoded = encode_news(item)
    assert encoded.event_id == derive_event_id(source="wire", url="https://x/1", headline="Fed holds rates")
    assert json.loads(encoded.payload) == item  # sent as given; the scorer normalises
    assert encode_news({"id": 42, "headline": "x"}).event_id == "42"


@pytest.mark.parametrize(
    ("item", "error_type"),
    [
        ({"body": "no headline"}, "missing_headline"),
        ({"headline": 5}, "wrong_type"),
        ({"headline": "x", "published_at": "2025-01-02T10:00:00"}, "naive_timestamp"),
        ({"headline": "x", "score": float("nan")}, "wrong_type"),
        ({"headline": "x", "when": object()}, "wrong_type"),
        ("just a string", "wrong_type"),
    ],
)
def test_encode_news_rejects_invalid_items(item: Any, error_type: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        encode_news(item)
    assert info.value.error_type == error_type


def test_replay_sends_valid_rows_and_reports_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    lines = [
        {"id": "a", "headline": "one", "published_at": "2025-01-02T10:00:00Z"},
        {"id": "b", "body": "no headline"},
        {"id": "c", "headline": "three", "published_at": "2025-01-02T10:00:02Z"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n", encoding="utf-8")
    sender = FakeSender()
    skipped: list[tuple[int, str]] = []
    sent_ids: list[str] = []
    sleeps: list[float] = []
    counts = replay(
        read_news_file(path),
        sender,
        replay_speed=2,
        on_skip=lambda line, reason: skipped.append((line, reason)),
        on_sent=sent_ids.append,
        sleep=sleeps.append,
    )
    assert (counts.sent, counts.skipped) == (2, 2)
    assert [e.event_id for e in sender.sent] == sent_ids == ["a", "c"]
    assert skipped[0] == (2, "headline is missing")
    assert skipped[1][0] == 4 and skipped[1][1].startswith("not valid JSON")
    assert sender.flushes == 1
    assert len(sleeps) == 1 and sleeps[0] == pytest.approx(1.0, abs=0.05)  # 2 s of event time at 2x
