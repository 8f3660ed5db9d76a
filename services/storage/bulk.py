"""`INSERT … ON CONFLICT DO NOTHING RETURNING` for many rows at once, cheap on the client.

The scorer writes hundreds of rows per transaction while the model scores the next slice on
the same two cores. SQLAlchemy's multi-row VALUES (insertmanyvalues) builds one statement
with a placeholder per value (2,800 for 256 stories), which psycopg re-parses in Python for
every slice: measured in a live worker at 13-15 % of a core, holding the GIL the model's
threads need between operations. On PostgreSQL the rows therefore go as one array per
column through `unnest`: a short statement (parsed once, cached by psycopg) and
array parameters that psycopg dumps in C. Same rows, same conflicts, same RETURNING.
SQLite keeps the multi-row VALUES statement. Like any text statement, this path applies no
Python-side column defaults: every column a row needs must be in the row (none of the
scorer's tables defines one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import JSON, String, Table, text
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
    returning: str,
) -> list[Any]:
    """Insert `rows` (all with the same keys) in the caller's transaction, skipping rows whose
    `conflict` columns already exist; return the `returning` column of the rows inserted."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    columns = tuple(rows[0])
    if dialect.name == "postgresql":
        statement = _unnest_insert(table, columns, tuple(conflict), returning)
        params = {name: _column_values(table, name, rows, dialect) for name in columns}
        return list(session.scalars(statement, params))
    if dialect.name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
        return list(session.scalars(stmt.returning(table.c[returning]), list(rows)))
    raise NotImplementedError(f"upserts are implemented for PostgreSQL and SQLite, not {dialect.name}")


@cache
def _unnest_insert(
    table: Table, columns: tuple[str, ...], conflict: tuple[str, ...], returning: str
) -> TextClause:
    """INSERT INTO t (a, b) SELECT * FROM unnest(CAST(:a AS type_a[]), CAST(:b AS type_b[])) …"""
    unknown = {*columns, *conflict, returning} - set(table.c.keys())
    if unknown:
        raise KeyError(f"{table.name} has no column(s) {sorted(unknown)}")
    arrays = ", ".join(f"CAST(:{name} AS {_postgres_type(table, name)}[])" for name in columns)
    # Identifiers and types come from the table definition (checked above), never from data;
    # every value is a bound parameter.
    return text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "  # noqa: S608
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING RETURNING {returning}"
    )


def _postgres_type(table: Table, name: str) -> str:
    """The array element type. Strings are cast without their length: an explicit cast to
    varchar(n) would cut a longer value silently, while the insert's own assignment into the
    varchar(n) column refuses it ("value too long"), as the VALUES statement did."""
    column_type = table.c[name].type
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, String):
        return "TEXT"
    return str(column_type.compile(dialect=_POSTGRES))


def _column_values(table: Table, name: str, rows: Sequence[Mapping[str, Any]], dialect: Dialect) -> list[Any]:
    """One column's values as the column type would bind them one by one: a TypeDecorator's
    checks (e.g. UTCDateTime refuses naive datetimes) run, JSON values are serialised."""
    column_type = table.c[name].type
    values = [row[name] for row in rows]
    if isinstance(column_type, TypeDecorator):
        try:
            values = [column_type.process_bind_param(v, dialect) for v in values]
        except ValueError as exc:  # as SQLAlchemy reports a bad bound value
            raise StatementError(f"({type(exc).__name__}) {exc}", f"{table.name}.{name}", None, exc) from exc
        column_type = column_type.impl_instance
    if isinstance(column_type, JSON):  # None too, as JSON null: SQLAlchemy's JSON default
        values = [json.dumps(v) for v in values]
    return values
