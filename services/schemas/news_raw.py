"""The `news.raw` message, schema version 1: validation and normalisation into a `NewsItem`.

Every producer (file replay, HTTP, feed polling) writes this JSON object and the scorer
reads it back through `parse_raw_news`, so there is exactly one definition of a valid
message. Anything wrong with a message becomes an `InvalidMessage` with a one-line reason
and a short machine-readable `error_type`: the scorer sends it to `news.dlq` with both and
goes on. No I/O here.

    {"id": "abc-1", "headline": "$AAPL beats on earnings", "body": "...", "source": "wire",
     "url": "https://...", "published_at": "2025-01-02T14:30:00Z", "tickers": ["AAPL"],
     "schema_version": 1, ...anything else is kept in `extra`}
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from bert_core import normalize_text
from services.schemas.tickers import extract_tickers, normalise_tickers
from services.settings import FlatSettings

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 1_000_000
MAX_HEADLINE_CHARS = 1_000
MAX_BODY_CHARS = 100_000
MAX_ID_CHARS = 128
MAX_SOURCE_CHARS = 200
MAX_URL_CHARS = 2_048
MAX_TICKERS = 50
MAX_TICKER_CHARS = 20
DERIVED_ID_PREFIX = "h:"
# Control characters (C0, DEL, C1), bidirectional overrides and line separators: an id or a
# ticker is printed on terminals, in logs and on dashboards, where these rewrite what is shown.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
DEFAULT_MAX_FUTURE_SKEW = timedelta(seconds=FlatSettings.model_fields["max_future_skew_seconds"].default)
# The earliest `published_at` accepted. Older is not news, and a date near `datetime.min`
# breaks the event-time arithmetic downstream (the alerter's watermark minus its lateness,
# look-back windows, story windows): one such story would end every consumer that reads it.
MIN_PUBLISHED_AT = datetime(1900, 1, 1, tzinfo=UTC)


class InvalidMessage(ValueError):
    """A message that can never be processed; `reason` is one line for humans (and the DLQ)."""

    def __init__(self, reason: str, error_type: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type


@dataclass(frozen=True, slots=True)
class NewsItem:
    """A validated, normalised news item: what the scorer scores and storage stores."""

    event_id: str
    headline: str
    published_at: datetime  # UTC-aware: the message's, else the time it was received
    received_at: datetime  # UTC-aware
    body: str | None = None
    source: str | None = None
    url: str | None = None
    tickers: tuple[str, ...] = ()  # sorted, unique, upper-case
    extra: dict[str, Any] = field(default_factory=dict)


def _too_large(what: str, limit: int, unit: str = "characters") -> PydanticCustomError:
    return PydanticCustomError("too_large", f"{what} is longer than {limit:,} {unit}")


def _optional_text(value: str | None, name: str, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > limit:
        raise _too_large(name, limit)
    return value.strip()


class RawNews(BaseModel):
    """The wire format. Strict types: a number where a string belongs is an error, not coerced."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    schema_version: Literal[1] = 1
    id: str | None = None
    headline: str
    body: str | None = None
    source: str | None = None
    url: str | None = None
    published_at: datetime | None = None  # None: the caller's receive time is used
    tickers: list[str] | None = None

    @property
    def extra(self) -> dict[str, Any]:
        """Unknown fields, kept as they arrived."""
        return dict(self.model_extra or {})

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, bool):  # JSON true is not the number 1
            raise PydanticCustomError("unsupported_version", "schema_version must be a number, got a boolean")
        return value

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        # Many feeds number their items; an integer id is as stable as a string one.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("id")
    @classmethod
    def _id_text(cls, value: str | None) -> str | None:
        if value is not None and (found := _UNPRINTABLE.search(value)):
            raise PydanticCustomError(
                "invalid_id",
                "id {id} has a control character (U+{code}); ids are shown and logged as they are",
                {"id": ascii(value[:40]), "code": f"{ord(found.group()):04X}"},
            )
        return _optional_text(value, "id", MAX_ID_CHARS)

    @field_validator("headline")
    @classmethod
    def _headline(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise PydanticCustomError("missing_headline", "headline is empty")
        if len(value) > MAX_HEADLINE_CHARS:
            raise _too_large("headline", MAX_HEADLINE_CHARS)
        if not normalize_text(value):  # the model would get an empty text (and fail its batch)
            raise PydanticCustomError("missing_headline", "headline has no text besides links and markup")
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        return _optional_text(value, "body", MAX_BODY_CHARS)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        return _optional_text(value, "source", MAX_SOURCE_CHARS)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _optional_text(value, "url", MAX_URL_CHARS)

    @field_validator("published_at", mode="plain")
    @classmethod
    def _published_at(cls, value: Any) -> datetime | None:
        # Only ISO 8601 strings: a bare number could be seconds or milliseconds, and a
        # timestamp without a zone would silently shift event time by the producer's offset.
        if value is None:
            return None
        if not isinstance(value, str):
            raise PydanticCustomError(
                "wrong_type", "published_at must be an ISO 8601 string, got {got}", {"got": _json_type(value)}
            )
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise PydanticCustomError(
                "invalid_timestamp",
                "published_at '{value}' is not an ISO 8601 timestamp",
                {"value": value[:60]},
            ) from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise PydanticCustomError(
                "naive_timestamp",
                "published_at '{value}' has no time zone (add Z or an offset such as +00:00)",
                {"value": value[:60]},
            )
        try:
            published = parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+14:00 and 9999-12-31T23:59-14:00 have no UTC time
            published = None
        if published is None or published < MIN_PUBLISHED_AT:
            raise PydanticCustomError(
                "invalid_timestamp",
                "published_at '{value}' is out of range (from 1900 on)",
                {"value": value[:60]},
            )
        return published

    @field_validator("tickers")
    @classmethod
    def _tickers(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) > MAX_TICKERS:
            raise PydanticCustomError("too_large", f"tickers has more than {MAX_TICKERS} entries")
        for ticker in value:
            if len(ticker) > MAX_TICKER_CHARS or len(ticker.split()) > 1 or _UNPRINTABLE.search(ticker):
                raise PydanticCustomError(
                    "invalid_ticker", "ticker {ticker} is not a symbol", {"ticker": ascii(ticker[:40])}
                )
        return list(normalise_tickers(value))


def derive_event_id(*, source: str | None, url: str | None, headline: str) -> str:
    """A stable id for messages without one: the same story from the same place maps to the same id."""
    key = "\x1f".join((source or "", url or "", headline))  # unit separator: no ambiguous joins
    return DERIVED_ID_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def parse_raw_news(
    payload: bytes | None,
    *,
    received_at: datetime,
    watchlist: Mapping[str, str],
    max_bytes: int = MAX_PAYLOAD_BYTES,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
) -> NewsItem:
    """Decode, validate and normalise one `news.raw` message; raise `InvalidMessage` if it cannot be.

    A `published_at` more than `max_future_skew` after `received_at` is refused
    (`future_published_at`): one story dated 2099 would otherwise become the newest bucket
    every dashboard range and the labelling window end at."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")  # a caller bug, not a bad message
    if payload is None:  # a Kafka record without a value
        raise InvalidMessage("message has no value", "invalid_json")
    if len(payload) > max_bytes:
        raise InvalidMessage(
            f"message is {len(payload):,} bytes, over the {max_bytes:,}-byte limit", "too_large"
        )
    data = _decode(bytes(payload))
    if not isinstance(data, dict):
        raise InvalidMessage(f"message must be a JSON object, got {_json_type(data)}", "wrong_type")
    try:
        raw = RawNews.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None
    if raw.published_at is not None and raw.published_at > received_at + max_future_skew:
        ahead = raw.published_at - received_at.astimezone(UTC)
        raise InvalidMessage(
            f"published_at {raw.published_at.isoformat()} is in the future: {_duration(ahead)} after "
            f"the receive time {received_at.astimezone(UTC).isoformat()}, more than the allowed "
            f"{_duration(max_future_skew)} (FINSENT_MAX_FUTURE_SKEW_SECONDS)",
            "future_published_at",
        )
    tickers = tuple(raw.tickers) if raw.tickers else ()
    if not tickers:  # absent or empty: an empty list tells nothing, extraction is cheap
        tickers = tuple(extract_tickers(f"{raw.headline}\n{raw.body or ''}", watchlist))
    return NewsItem(
        event_id=raw.id or derive_event_id(source=raw.source, url=raw.url, headline=raw.headline),
        headline=raw.headline,
        body=raw.body,
        source=raw.source,
        url=raw.url,
        published_at=raw.published_at or received_at.astimezone(UTC),
        received_at=received_at.astimezone(UTC),
        tickers=tickers,
        extra=raw.extra,
    )


def _duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:,.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 60:.0f} minutes"


def _decode(payload: bytes) -> Any:
    bom = len(codecs.BOM_UTF8) if payload.startswith(codecs.BOM_UTF8) else 0  # tolerated, not required
    try:
        text = payload[bom:].decode("utf-8")  # strict: any invalid byte is an error
    except UnicodeDecodeError as exc:
        raise InvalidMessage(
            f"message is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {bom + exc.start})",
            "invalid_utf8",
        ) from None
    if not text.strip():
        raise InvalidMessage("message is empty", "invalid_json")
    try:
        data = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(
            f"message is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "invalid_json"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(f"message is not valid JSON: {exc}", "invalid_json") from None
    if "\\u" in text:  # without \u escapes a decoded string can hold neither NUL nor a surrogate
        _check_text(data)
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e999 reads as infinity, which no database JSON column stores: refused here, it is one
    # invalid message, not a batch the database refuses and the worker stores item by item.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


# One decoder for every message: `json.loads` with an option builds a new one per call (8 µs
# of the scorer's model thread per headline).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _check_text(data: Any) -> None:
    """Refuse strings that no database text column can store: NUL and unpaired surrogates
    (both legal as JSON escapes), anywhere in the message, keys included.

    Only a `\\u` escape can put either into a decoded string (the strict UTF-8 decoding refuses
    encoded surrogates; the JSON decoder refuses raw control characters in strings), so
    `_decode` skips this walk for the messages that have none: most of them."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            if "\x00" in value:
                raise InvalidMessage("message contains a NUL character (\\u0000)", "invalid_text")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidMessage(
                    "message contains an unpaired UTF-16 surrogate escape", "invalid_text"
                ) from None


_CUSTOM_TYPES = frozenset(
    {
        "too_large",
        "missing_headline",
        "naive_timestamp",
        "invalid_timestamp",
        "invalid_ticker",
        "invalid_id",
        "wrong_type",
        "unsupported_version",
    }
)
_EXPECTED = {
    "schema_version": f"the number {SCHEMA_VERSION}",
    "id": "a string or an integer",
    "tickers": "a list of strings",
}


def _invalid(exc: ValidationError) -> InvalidMessage:
    """The first validation error as one line: which field, what was wrong."""
    error = exc.errors(include_url=False)[0]
    loc = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    field_name = str(error["loc"][0]) if error["loc"] else "message"
    kind = error["type"]
    if kind == "missing" or (loc == "headline" and error["input"] is None):
        return InvalidMessage(f"{loc} is missing", f"missing_{field_name}")
    if kind in _CUSTOM_TYPES:
        return InvalidMessage(error["msg"], kind)
    if kind == "literal_error" and field_name == "schema_version":
        return InvalidMessage(
            f"schema_version {error['input']!r} is not supported (expected {SCHEMA_VERSION})",
            "unsupported_version",
        )
    if kind.endswith("_type") or kind.startswith("literal"):
        expected = _EXPECTED.get(field_name, "a string")
        if loc != field_name:  # an element of a list
            expected = "a string"
        return InvalidMessage(f"{loc} must be {expected}, got {_json_type(error['input'])}", "wrong_type")
    return InvalidMessage(f"{loc}: {error['msg']}", "invalid_value")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
