"""Reading news files (JSONL or CSV) into `news.raw` dicts, one `FileRecord` per row.

A bad row does not stop the file: it becomes a record with an `error` and a line number,
which the caller reports and skips. Only a file that cannot be read at all (missing,
unsupported type, not UTF-8, a CSV without a headline column) raises `NewsFileError`.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# CSV columns (case-insensitive) and the schema field each one fills; the first present wins.
HEADLINE_COLUMNS = ("headline", "text", "title")
FIELD_COLUMNS = ("id", "body", "source", "url", "published_at")
TICKERS_COLUMN = "tickers"
_TICKER_SEPARATORS = re.compile(r"[;,]")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


class NewsFileError(ValueError):
    """The file as a whole cannot be read; the message is one line naming the file."""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One row of a news file: an item to send, or the reason it cannot be read."""

    line: int  # 1-based line where the row starts (JSONL) or ends (CSV)
    item: dict[str, Any] | None
    error: str | None = None


def file_format(path: Path) -> str:
    """'jsonl' or 'csv' by suffix; `NewsFileError` for anything else."""
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise NewsFileError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; use .jsonl or .csv")
    return fmt


def read_news_file(path: Path) -> Iterator[FileRecord]:
    """The file's rows as records, streaming (the file is never loaded whole)."""
    if not path.is_file():
        raise NewsFileError(f"{path}: no such file")
    fmt = file_format(path)
    if fmt == "jsonl":
        with path.open("rb") as fh:
            yield from read_jsonl(fh)
        return
    with path.open("r", encoding="utf-8-sig", newline="") as text:
        try:
            yield from read_csv(text)
        except UnicodeDecodeError as exc:
            raise NewsFileError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        except csv.Error as exc:
            raise NewsFileError(f"{path}: malformed CSV: {exc}") from None


def count_records(path: Path) -> int:
    """Rows in the file, for a progress bar (a quick pass that does not parse JSON)."""
    if file_format(path) == "jsonl":
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as text:
        return max(0, sum(1 for _ in csv.reader(text)) - 1)


def read_jsonl(lines: Iterable[bytes]) -> Iterator[FileRecord]:
    """One JSON object per line; blank lines are skipped, each line is decoded on its own."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield FileRecord(number, None, f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})")
            continue
        except json.JSONDecodeError as exc:
            yield FileRecord(number, None, f"not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(data, dict):
            yield FileRecord(number, None, f"not a JSON object (got {type(data).__name__})")
            continue
        yield FileRecord(number, data)


def read_csv(text: Iterable[str]) -> Iterator[FileRecord]:
    """A CSV with a header row; see `csv_row_to_item` for how columns map to fields."""
    reader = csv.DictReader(text, restkey="\x00extra")
    header = [name.strip().lower() for name in (reader.fieldnames or [])]
    if not any(column in header for column in HEADLINE_COLUMNS):
        raise NewsFileError(
            f"CSV has no headline column (one of {', '.join(HEADLINE_COLUMNS)}); "
            f"columns: {', '.join(header) or '(none)'}"
        )
    for row in reader:
        if "\x00extra" in row:
            yield FileRecord(reader.line_num, None, "row has more fields than the header")
            continue
        yield FileRecord(reader.line_num, csv_row_to_item(row))


def split_tickers(value: str) -> list[str]:
    """'AAPL;MSFT' or 'AAPL, MSFT' -> ['AAPL', 'MSFT']."""
    return [part.strip() for part in _TICKER_SEPARATORS.split(value) if part.strip()]


def csv_row_to_item(row: Mapping[str | None, str | None]) -> dict[str, Any]:
    """A CSV row as a news.raw dict: empty cells are left out, unknown columns kept as extra fields.

    The headline comes from `headline`, else `text`, else `title`; `tickers` is split on
    ';' or ','. All values stay strings: the schema decides what is valid.
    """
    cells = {
        str(name).strip().lower(): value.strip()
        for name, value in row.items()
        if name is not None and str(name).strip() and value is not None and value.strip()
    }
    item: dict[str, Any] = {}
    headline_column = next((c for c in HEADLINE_COLUMNS if c in cells), None)
    if headline_column is not None:
        item["headline"] = cells.pop(headline_column)
    for column in FIELD_COLUMNS:
        if column in cells:
            item[column] = cells.pop(column)
    if TICKERS_COLUMN in cells:
        tickers = split_tickers(cells.pop(TICKERS_COLUMN))
        if tickers:
            item["tickers"] = tickers
    item.update(cells)
    return item
