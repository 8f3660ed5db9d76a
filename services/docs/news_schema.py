"""docs/news_raw.schema.json: the `news.raw` message as JSON Schema, for producers in any language.

Derived from the pydantic model the scorer validates with (`services.schemas.RawNews`), then
completed with what its validators enforce in code — length limits, integer ids, time zones
— so an outside producer can check a message before sending it. The scorer stays the
judge: a message the schema accepts can still be refused for a reason a schema cannot
express (a headline of nothing but links), with the reason in `news.dlq`.
"""

from __future__ import annotations

import json
from typing import Any

from services.schemas import news_raw
from services.schemas.news_raw import RawNews

_NULLABLE_TEXT: dict[str, tuple[int, str]] = {
    "body": (news_raw.MAX_BODY_CHARS, "Story text; the model scores the headline, storage keeps the body"),
    "source": (news_raw.MAX_SOURCE_CHARS, "Publisher or feed name; part of the derived id"),
    "url": (news_raw.MAX_URL_CHARS, "Link to the story; part of the derived id"),
}


def news_raw_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one `news.raw` message."""
    schema = RawNews.model_json_schema()
    props = schema["properties"]
    for prop in props.values():
        prop.pop("title", None)
    props["schema_version"]["description"] = f"Message format version; only {news_raw.SCHEMA_VERSION} exists"
    props["id"] = {
        "anyOf": [
            {"type": "string", "maxLength": news_raw.MAX_ID_CHARS},
            {"type": "integer"},
            {"type": "null"},
        ],
        "default": None,
        "description": "Stable id of the story (the Kafka key and the database key: a resend replaces, "
        "never duplicates). Integers are read as their decimal text. Absent or blank: "
        f"'{news_raw.DERIVED_ID_PREFIX}' + a hash of source, url and headline",
    }
    props["headline"] = {
        "type": "string",
        "minLength": 1,
        "maxLength": news_raw.MAX_HEADLINE_CHARS,
        "description": "The text the model scores; must keep some text once links and markup are removed",
    }
    for name, (limit, description) in _NULLABLE_TEXT.items():
        props[name] = {
            "anyOf": [{"type": "string", "maxLength": limit}, {"type": "null"}],
            "default": None,
            "description": description + "; blank is the same as absent",
        }
    props["published_at"] = {
        "anyOf": [
            {"type": "string", "format": "date-time", "pattern": r"(Z|z|[+-]\d{2}(:?\d{2})?)$"},
            {"type": "null"},
        ],
        "default": None,
        "description": "Event time, ISO 8601 with a time zone (Z or an offset); the alerter's windows "
        "follow it. Absent: the time the message was received",
    }
    props["tickers"] = {
        "anyOf": [
            {
                "type": "array",
                "maxItems": news_raw.MAX_TICKERS,
                "items": {"type": "string", "maxLength": news_raw.MAX_TICKER_CHARS, "pattern": r"^\S+$"},
            },
            {"type": "null"},
        ],
        "default": None,
        "description": "Symbols the story is about (upper-cased, '$' dropped, de-duplicated). Absent or "
        "empty: extracted from cashtags and watchlist company names in headline and body",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "news.raw message",
        "description": "One news item on the news.raw topic, UTF-8 JSON, at most "
        f"{news_raw.MAX_PAYLOAD_BYTES:,} bytes. Unknown fields are kept (stored as extra).",
        "type": "object",
        "properties": props,
        "required": schema["required"],
        "additionalProperties": True,
    }


def render_news_schema() -> str:
    """The file's text: indented JSON with a final newline."""
    return json.dumps(news_raw_json_schema(), indent=2, ensure_ascii=False) + "\n"
