"""docs/news_raw.schema.json must agree with the scorer's own validation on what it can express."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from services.docs.news_schema import news_raw_json_schema
from services.schemas import InvalidMessage, parse_raw_news

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

ACCEPTED: list[dict[str, Any]] = [
    {"headline": "$AAPL beats on earnings"},
    {"id": 17, "headline": "Fed holds rates", "published_at": "2026-01-05T11:59:00Z"},
    {"id": "abc-1", "headline": "Oil slumps", "published_at": "2026-01-05T11:59:00+01:00", "tickers": ["X"]},
    {"headline": "Gold rallies", "body": None, "source": "wire", "url": "https://example.com/a", "desk": "x"},
    {"schema_version": 1, "headline": "Bank merger", "tickers": []},
]
REJECTED: list[dict[str, Any]] = [
    {},
    {"headline": ""},
    {"headline": 5},
    {"headline": "x" * 1001},
    {"headline": "ok", "schema_version": 2},
    {"headline": "ok", "id": "i" * 129},
    {"headline": "ok", "published_at": "2026-01-05T11:59:00"},
    {"headline": "ok", "published_at": 1767614340},
    {"headline": "ok", "tickers": ["TWO WORDS"]},
    {"headline": "ok", "tickers": ["T"] * 51},
    {"headline": "ok", "source": "s" * 201},
]


def _scorer_accepts(message: dict[str, Any]) -> bool:
    try:
        parse_raw_news(json.dumps(message).encode(), received_at=NOW, watchlist={})
    except InvalidMessage:
        return False
    return True


def _validator() -> jsonschema.protocols.Validator:
    schema = news_raw_json_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("message", ACCEPTED)
def test_schema_and_scorer_both_accept(message: dict[str, Any]) -> None:
    assert _scorer_accepts(message)
    assert _validator().is_valid(message)


@pytest.mark.parametrize("message", REJECTED)
def test_schema_and_scorer_both_reject(message: dict[str, Any]) -> None:
    assert not _scorer_accepts(message)
    assert not _validator().is_valid(message)
