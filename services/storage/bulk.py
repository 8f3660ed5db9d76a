"""`INSERT … ON CONFLICT DO NOTHING RETURNING` for many rows at once, cheap on the client.

The scorer writes hundreds of rows per transaction while the model scores the next slice on
the same two cores, and every microsecond the database thread spends in Python holds the GIL
the model's pass threads need between operations. SQLAlchemy's multi-row VALUES
(insertmanyvalues) builds one statement with a placeholder per value (2,800 for 256
stories), which psycopg re-parses in Python for every slice: measured in a live worker at
13-15 % of a core. One array per column through `unnest` was better, but psycopg still
walks every array element in Python. On PostgreSQL the rows therefore go as a single JSON
document expanded by `json_to_recordset`: one `json.dumps` (C) of the whole slice and one
text parameter; measured for 256 prediction rows at 1.8 ms of client CPU against 4.6 ms
with `unnest` arrays (a one-off benchmark, in git history: benchmarks/bulk_insert.py). Same
rows, same conflicts, same RETURNING, and PostgreSQL parses every value into the column's
own type.
SQLite keeps the multi-row VALUES statement. Like any text statement, this path applies no
Python-side column defaults: every column a row needs must be in the row (none of the
scorer's tables defines one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import JSON, Date, DateTime, String, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import TypeDecorator

_POSTGRES = postgresql.dialect()


def insert_ignoring_conflicts(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    returning: str | None,
) -> list[Any]:
    """Insert `rows` (all with the same keys) in the caller's transaction, skipping rows whose
    `conflict` columns already exist; return the `returning` column of the rows inserted
    (with `returning=None`, no RETURNING clause and an empty list: nothing to send back)."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    columns = tuple(rows[0])
    if dialect.name == "postgresql":
        statement = _recordset_insert(table, columns, tuple(conflict), returning)
        parameters = {"rows": _rows_document(table, columns, rows, dialect)}
        if returning is None:
            session.execute(statement, parameters)
            return []
        return list(session.scalars(statement, parameters))
    if dialect.name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
        if returning is None:
            session.execute(stmt, list(rows))
            return []
        return list(session.scalars(stmt.returning(table.c[returning]), list(rows)))
    raise NotImplementedError(f"upserts are implemented for PostgreSQL and SQLite, not {dialect.name}")


@cache
def _recordset_insert(
    table: Table, columns: tuple[str, ...], conflict: tuple[str, ...], returning: str | None
) -> TextClause:
    """INSERT INTO t (a, b) SELECT r.a, r.b -> 0 FROM json_to_recordset(CAST(:rows AS JSON))
    AS r(a type_a, b JSON) …: a JSON column's value travels wrapped in a one-element array
    (`_rows_document`), so that a Python None stays a JSON null (SQLAlchemy's JSON default)
    where `json_to_recordset` would turn a bare null into SQL NULL."""
    unknown = {*columns, *conflict, *([returning] if returning else [])} - set(table.c.keys())
    if unknown:
        raise KeyError(f"{table.name} has no column(s) {sorted(unknown)}")
    types = {name: _postgres_type(table, name) for name in columns}
    selected = ", ".join(f"r.{n} -> 0" if types[n] == "JSON" else f"r.{n}" for n in columns)
    record = ", ".join(f"{n} {types[n]}" for n in columns)
    # Identifiers and types come from the table definition (checked above), never from data;
    # the rows are one bound parameter.
    return text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {selected} "  # noqa: S608
        f"FROM json_to_recordset(CAST(:rows AS JSON)) AS r({record}) "
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING" + (f" RETURNING {returning}" if returning else "")
    )


def _postgres_type(table: Table, name: str) -> str:
    """The type a value is parsed into from the JSON document. Strings are read without their
    length: a cast to varchar(n) would cut a longer value silently, while the insert's own
    assignment into the varchar(n) column refuses it ("value too long"), as the VALUES
    statement did."""
    column_type = _impl(table, name)
    if isinstance(column_type, String):
        return "TEXT"
    return str(column_type.compile(dialect=_POSTGRES))


def _rows_document(
    table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], dialect: Dialect
) -> str:
    """The rows as one JSON array of objects, each value as its column type would bind it one by
    one: a TypeDecorator's checks run (e.g. UTCDateTime refuses naive datetimes), datetimes
    become ISO 8601 with their offset (which PostgreSQL parses exactly), and a JSON column's
    value is wrapped in a one-element array (`_recordset_insert`)."""
    values = []
    for name in columns:
        column = bound_values(table, name, rows, dialect)
        kind = _impl(table, name)
        if isinstance(kind, JSON):
            column = [[v] for v in column]
        elif isinstance(kind, DateTime | Date):
            column = [v if v is None else v.isoformat() for v in column]
        values.append(column)
    document = [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]
    try:
        return json.dumps(document, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:  # a NaN or infinite float: JSON has no such number
        raise StatementError(f"({type(exc).__name__}) {exc}", table.name, None, exc) from exc


def bound_values(table: Table, name: str, rows: Sequence[Mapping[str, Any]], dialect: Dialect) -> list[Any]:
    """One column's values as the column type would bind them one by one: a TypeDecorator's
    checks (e.g. UTCDateTime refuses naive datetimes) run."""
    column_type = table.c[name].type
    values = [row[name] for row in rows]
    if isinstance(column_type, TypeDecorator):
        try:
            values = [column_type.process_bind_param(v, dialect) for v in values]
        except ValueError as exc:  # as SQLAlchemy reports a bad bound value
            raise StatementError(f"({type(exc).__name__}) {exc}", f"{table.name}.{name}", None, exc) from exc
    return values


def _impl(table: Table, name: str) -> Any:
    column_type = table.c[name].type
    return column_type.impl_instance if isinstance(column_type, TypeDecorator) else column_type
