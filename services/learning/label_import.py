"""Importing a file of labels (CSV, TSV or JSONL), as `finsent labels import` and the
dashboard's upload do.

Problems in the file as a whole (unreadable, not UTF-8, no `task` column) stop the import
with one message; problems in a row reject that row with its number, and the good rows
are imported — unless `strict`, when any bad row means nothing is stored. Rows are numbered
as the user finds them: a CSV record by the line it starts on (the header is row 1; blank
lines count, so the number is the spreadsheet row unless an earlier cell spans several
lines), JSONL by line. Rows are never merged: a stray quote that would make csv's lenient
reader take the following lines into one cell rejects its own row, and reading resumes on
the next line (`_swallowed_lines` says when).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from services.learning.label_store import LabelCounts, record_labels
from services.learning.labels import KNOWN_COLUMNS, RowError, parse_label_rows

SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


class LabelFileError(ValueError):
    """The file cannot be imported at all; the message names the file and the fix."""


class StrictImportError(RuntimeError):
    """`strict` import with bad rows: raised so the caller's transaction stores nothing."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"{len(report.errors)} bad row(s); nothing imported")
        self.report = report


@dataclass
class LabelFile:
    rows: list[tuple[int, dict[str, object]]]
    errors: list[RowError]  # rows that are not even a record (bad JSON, extra CSV fields)
    columns: list[str]


@dataclass
class ImportReport:
    name: str
    rows: int = 0
    counts: LabelCounts = field(default_factory=LabelCounts)
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


def read_label_file(path: Path) -> LabelFile:
    """The file's rows; `LabelFileError` (one line, never a traceback) if it cannot be read."""
    try:
        if path.is_dir():
            raise LabelFileError(f"{path}: is a directory, not a label file")
        if not path.is_file():  # missing, or a FIFO / device that would block or never end
            raise LabelFileError(f"{path}: no such file")
        content = path.read_bytes()
    except OSError as exc:  # permission denied, an I/O error, a file removed meanwhile
        raise LabelFileError(f"{path}: cannot read the file ({exc.strerror or type(exc).__name__})") from None
    return parse_label_file(content, name=str(path))


def parse_label_file(content: bytes, *, name: str) -> LabelFile:
    """Rows of a CSV/TSV/JSONL file given as bytes (`name` picks the format and labels messages)."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise LabelFileError(
            f"{name}: unsupported format {suffix or '(none)'!r}; use one of {', '.join(SUFFIXES)}"
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise LabelFileError(f"{name}: not valid UTF-8 (line {line}); re-save the file as UTF-8") from None
    parsed = (
        _read_json(text, name) if suffix in (".jsonl", ".ndjson", ".json") else _read_csv(text, suffix, name)
    )
    columns = set(parsed.columns)
    missing = [c for c in ("task", "label") if c not in columns]
    if "text" not in columns and "event_id" not in columns:
        missing.insert(0, "text or event_id")
    # Checked before "no rows": a header of the wrong columns is the thing to fix first. (Rows
    # that are all unreadable are reported one by one instead.)
    if missing and (parsed.rows or (parsed.columns and not parsed.errors)):
        found = ", ".join(parsed.columns) or "none"
        raise LabelFileError(f"{name}: missing column(s) {', '.join(missing)} (found: {found})")
    if not parsed.rows and not parsed.errors:
        raise LabelFileError(f"{name}: no rows")
    return parsed


class _Lines:
    """The file's physical lines for csv.reader, with a position the caller can move back:
    after a record that swallowed lines, reading resumes on the line after its first."""

    def __init__(self, text: str) -> None:
        # StringIO with newline="" splits where csv does (\n, \r\n, \r) and keeps the ends.
        self.lines = io.StringIO(text, newline="").readlines()
        self.pos = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


def _read_csv(text: str, suffix: str, name: str) -> LabelFile:
    # csv.reader rather than DictReader: DictReader skips blank lines without saying so, and
    # the row number must be the line where each record starts (a quoted cell may span lines).
    delimiter = "\t" if suffix == ".tsv" else ","
    feed = _Lines(text)
    reader = csv.reader(feed, delimiter=delimiter)
    header: list[str] = []
    rows: list[tuple[int, dict[str, object]]] = []
    errors: list[RowError] = []
    try:
        while True:
            first = feed.pos  # 0-based index of the record's first line
            try:
                fields = next(reader)
            except StopIteration:
                break
            start = first + 1
            if not fields:  # a blank line: counted, never a record
                continue
            if not header:
                header = [c.strip() for c in fields]
                continue
            swallowed = _swallowed_lines(feed.lines[first : feed.pos], fields, delimiter, len(header))
            if swallowed is not None:
                errors.append(RowError(start, swallowed))
                feed.pos = first + 1  # the lines it took in are read again, as rows of their own
                continue
            if len(fields) > len(header):
                errors.append(
                    RowError(
                        start,
                        f"{len(fields)} fields but the header has {len(header)} "
                        "(quote texts that contain the delimiter)",
                    )
                )
                continue
            # missing trailing fields are None, as DictReader has them
            values: list[str | None] = [*fields, *([None] * (len(header) - len(fields)))]
            rows.append((start, dict(zip(header, values, strict=True))))
    except csv.Error as exc:
        raise LabelFileError(f"{name}: cannot parse as {suffix[1:]} (line {feed.pos}: {exc})") from None
    return LabelFile(rows, errors, header)


def _swallowed_lines(lines: list[str], fields: list[str], delimiter: str, columns: int) -> str | None:
    """Why a record is really a stray quote that took in the lines after it, or None.

    A quoted cell may legitimately hold a line break, so a record is only refused when (a) its
    quote is never closed, so csv's lenient reader took the rest of the file as one cell, or
    (b) a line inside one of its cells has as many delimiters as a whole row: that is a row
    swallowed by a missing quote, not a headline.
    """
    fix = 'close the quote, or write a quote inside a text twice ("")'
    if _ends_in_open_quote("".join(lines), delimiter):
        return f"a quote opened in this row is never closed (it would take in the rest of the file); {fix}"
    for cell in fields:
        inner = cell.splitlines()
        if len(inner) > 1 and any(line.count(delimiter) >= columns - 1 for line in inner):
            return (
                f"a quoted cell takes in the next {len(lines) - 1} line(s), which look like rows of "
                f"their own; {fix}"
            )
    return None


def _ends_in_open_quote(record: str, delimiter: str) -> bool:
    """True when the record ends inside a quoted cell, by csv's own rules in its lenient mode
    (a quote opens a cell only at its start; "" inside is a quote; a quote closes it)."""
    state = "start"  # start of a cell | unquoted | quoted | quote seen inside a quoted cell
    for char in record:
        if state == "quoted":
            state = "quote" if char == '"' else "quoted"
        elif state == "quote":
            state = "quoted" if char == '"' else ("start" if char in (delimiter, "\n", "\r") else "unquoted")
        elif char in (delimiter, "\n", "\r"):
            state = "start"
        elif state == "start" and char == '"':
            state = "quoted"
        else:
            state = "unquoted"
    return state == "quoted"


def _read_json(text: str, name: str) -> LabelFile:
    rows: list[tuple[int, dict[str, object]]] = []
    errors: list[RowError] = []
    columns: dict[str, None] = {}
    if text.lstrip().startswith("["):  # a .json array of objects: rows are counted from 1
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabelFileError(f"{name}: invalid JSON (line {exc.lineno}: {exc.msg})") from None
        numbered = list(enumerate(records, start=1))
    else:
        numbered = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                errors.append(RowError(lineno, f"invalid JSON ({exc.msg})"))
    for number, record in numbered:
        if not isinstance(record, Mapping):
            errors.append(RowError(number, f"expected a JSON object, got {type(record).__name__}"))
            continue
        columns.update(dict.fromkeys(str(k) for k in record))
        rows.append((number, {str(k): v for k, v in record.items()}))
    return LabelFile(rows, sorted(errors, key=lambda e: e.row), list(columns))


def import_labels(
    session: Session,
    labels: LabelFile,
    *,
    name: str,
    default_labeller: str | None,
    source: str,
    now: datetime,
    recent_share: float,
    strict: bool = False,
) -> ImportReport:
    """Validate and store the rows in the caller's transaction. With `strict`, raises
    `StrictImportError` (so the transaction rolls back) when any row is bad."""
    report = ImportReport(name=name, rows=len(labels.rows) + len(labels.errors))
    report.ignored_columns = [c for c in labels.columns if c not in KNOWN_COLUMNS]
    parsed, errors = parse_label_rows(
        (record for _, record in labels.rows),
        default_labeller=default_labeller,
        source=source,
        row_numbers=(number for number, _ in labels.rows),
    )
    report.errors = sorted([*labels.errors, *errors], key=lambda e: e.row)
    if strict and report.errors:
        raise StrictImportError(report)
    report.counts = record_labels(session, parsed, now=now, recent_share=recent_share)
    if report.counts.errors:
        report.errors = sorted([*report.errors, *report.counts.errors], key=lambda e: e.row)
        if strict:
            raise StrictImportError(report)
    return report
