"""The few SQL expressions that differ between PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func, literal_column
from sqlalchemy.orm import Session


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def greatest(dialect: str, *columns: Any) -> ColumnElement[float]:
    """Row-wise maximum: GREATEST on PostgreSQL, the multi-argument scalar max() on SQLite."""
    return func.greatest(*columns) if dialect == "postgresql" else func.max(*columns)


def least(dialect: str, *columns: Any) -> ColumnElement[float]:
    return func.least(*columns) if dialect == "postgresql" else func.min(*columns)


def epoch_seconds(dialect: str, column: Any) -> ColumnElement[int]:
    """Whole seconds since the Unix epoch of a UTC timestamp column (SQLite stores UTC text)."""
    if dialect == "postgresql":
        return cast(func.floor(func.extract("epoch", column)), BigInteger)
    return cast(func.strftime("%s", column), Integer)


# The text search configuration is a constant, not a bound parameter, on purpose: the GIN
# index is on the expression `to_tsvector('english', headline)` and PostgreSQL uses it only
# for a query expression that matches it exactly ($1 in place of 'english' does not).
FTS_CONFIG: ColumnElement[str] = literal_column("'english'")
