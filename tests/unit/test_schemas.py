"""`news.raw` validation and ticker extraction: every malformed-message class of issue 3 maps
to an `InvalidMessage` with its error type and a one-line reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.schemas import (
    DEFAULT_WATCHLIST,
    InvalidMessage,
    NewsItem,
    derive_event_id,
    extract_tickers,
    parse_raw_news,
)

RECEIVED = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
WATCHLIST = {"Apple": "AAPL", "Goldman Sachs": "GS", "McDonald's": "MCD", "Exxon Mobil": "XOM"}


def parse(message: Any, **kwargs: Any) -> NewsItem:
    payload = message if isinstance(message, bytes) else json.dumps(message).encode()
    return parse_raw_news(
        payload, received_at=RECEIVED, watchlist=kwargs.pop("watchlist", WATCHLIST), **kwargs
    )


def rejected(message: Any, error_type: str, **kwargs: Any) -> str:
    with pytest.raises(InvalidMessage) as info:
        parse(message, **kwargs)
    assert info.value.error_type == error_type, info.value.reason
    assert info.value.reason and "\n" not in info.value.reason
    assert str(info.value) == info.value.reason
    return info.value.reason


def test_valid_message_is_normalised() -> None:
    item = parse(
        {
            "id": " wire-42 ",
            "headline": "  Exxon beats estimates  ",
            "body": "Full story.",
            "source": "wire",
            "url": "https://example.com/a",
            "published_at": "2025-03-04T06:30:00-05:00",
            "tickers": ["xom", "CVX", "XOM"],
            "schema_version": 1,
        }
    )
    assert item == NewsItem(
        event_id="wire-42",
        headline="Exxon beats estimates",
        body="Full story.",
        source="wire",
        url="https://example.com/a",
        published_at=datetime(2025, 3, 4, 11, 30, tzinfo=UTC),
        received_at=RECEIVED,
        tickers=("CVX", "XOM"),
        extra={},
    )
    assert item.published_at.tzinfo is UTC


def test_minimal_message_defaults() -> None:
    item = parse({"headline": "Fed holds rates"})
    assert item.published_at == RECEIVED  # default: the receive time
    assert (item.body, item.source, item.url, item.tickers, item.extra) == (None, None, None, (), {})


def test_receive_time_is_converted_to_utc() -> None:
    received = datetime(2025, 3, 4, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    item = parse_raw_news(b'{"headline": "x"}', received_at=received, watchlist={})
    assert item.published_at == item.received_at == RECEIVED and item.received_at.tzinfo is UTC


def test_integer_id_is_accepted_as_string() -> None:
    assert parse({"id": 7, "headline": "x"}).event_id == "7"


def test_derived_event_id_is_stable_and_content_dependent() -> None:
    message = {"headline": "Apple beats", "source": "wire", "url": "https://example.com/1"}
    first = parse(message).event_id
    assert first.startswith("h:") and len(first) == 2 + 32
    assert parse({**message, "published_at": "2020-01-01T00:00:00Z", "other": 1}).event_id == first
    assert parse({**message, "headline": "  Apple beats "}).event_id == first  # surrounding blanks
    assert parse({**message, "headline": "Apple misses"}).event_id != first
    assert parse({**message, "source": "other"}).event_id != first
    assert parse({**message, "url": "https://example.com/2"}).event_id != first
    assert first == derive_event_id(source="wire", url="https://example.com/1", headline="Apple beats")
    # No ambiguity from joining the fields: moving text between them changes the id.
    assert derive_event_id(source="ab", url=None, headline="c") != derive_event_id(
        source="a", url="b", headline="c"
    )


def test_blank_id_falls_back_to_derived() -> None:
    assert parse({"id": "  ", "headline": "x"}).event_id.startswith("h:")


def test_unknown_fields_are_kept_in_extra() -> None:
    item = parse({"headline": "x", "lang": "en", "meta": {"score": 1.5, "tags": ["a"]}, "extra": None})
    assert item.extra == {"lang": "en", "meta": {"score": 1.5, "tags": ["a"]}, "extra": None}


def test_missing_headline() -> None:
    assert rejected({"body": "no headline"}, "missing_headline") == "headline is missing"
    rejected({"headline": None}, "missing_headline")
    rejected({"headline": " \t\n"}, "missing_headline")


@pytest.mark.parametrize(
    ("message", "mentions"),
    [
        ({"headline": 42}, "headline must be a string, got a number"),
        ({"headline": ["a"]}, "headline must be a string, got an array"),
        ({"headline": "x", "tickers": "AAPL"}, "tickers must be a list of strings, got a string"),
        ({"headline": "x", "tickers": ["AAPL", 3]}, "tickers[1] must be a string, got a number"),
        ({"headline": "x", "body": {"text": "y"}}, "body must be a string, got an object"),
        ({"headline": "x", "id": True}, "id must be a string or an integer, got a boolean"),
        ({"headline": "x", "published_at": 1741089600}, "published_at must be an ISO 8601 string"),
        (["headline", "x"], "message must be a JSON object, got an array"),
    ],
)
def test_wrong_types(message: Any, mentions: str) -> None:
    assert mentions in rejected(message, "wrong_type")


def test_non_utf8_bytes() -> None:
    reason = rejected(b'{"headline": "caf\xe9"}', "invalid_utf8")
    assert "0xe9" in reason and "offset 17" in reason


def test_utf8_bom_is_tolerated() -> None:
    assert parse(b'\xef\xbb\xbf{"headline": "x"}').headline == "x"


@pytest.mark.parametrize(
    "payload", [b'{"headline": "x"', b"", b"   ", b"headline", b'{"headline": "x", "n": NaN}']
)
def test_bad_json(payload: bytes) -> None:
    rejected(payload, "invalid_json")


@pytest.mark.parametrize("escape", ["\\u0000", "\\ud800"])
def test_text_no_database_can_store(escape: str) -> None:
    rejected(b'{"headline": "x", "meta": {"k": "a' + escape.encode() + b'"}}', "invalid_text")


def test_five_megabyte_body_is_too_large() -> None:
    payload = json.dumps({"headline": "x", "body": "a" * 5_000_000}).encode()
    reason = rejected(payload, "too_large")
    assert "5,000,029 bytes" in reason and "1,000,000-byte limit" in reason


def test_size_limits_of_fields() -> None:
    big = 2_000_000
    assert rejected({"headline": "x", "body": "a" * 100_001}, "too_large", max_bytes=big) == (
        "body is longer than 100,000 characters"
    )
    assert parse({"headline": "x", "body": "a" * 100_000}, max_bytes=big).body is not None
    assert "headline" in rejected({"headline": "a" * 1001}, "too_large")
    assert "tickers" in rejected({"headline": "x", "tickers": [f"T{i}" for i in range(51)]}, "too_large")


def test_naive_timestamp_is_rejected() -> None:
    reason = rejected({"headline": "x", "published_at": "2025-03-04T09:30:00"}, "naive_timestamp")
    assert "2025-03-04T09:30:00" in reason and "time zone" in reason
    rejected({"headline": "x", "published_at": "2025-03-04"}, "naive_timestamp")


def test_unparsable_timestamp() -> None:
    assert "yesterday" in rejected({"headline": "x", "published_at": "yesterday"}, "invalid_timestamp")


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",  # no UTC time: astimezone overflowed, ending every worker
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00Z",  # before 1900: event-time arithmetic downstream would overflow
        "1899-12-31T23:59:59Z",
    ],
)
def test_published_at_out_of_range_is_invalid_not_a_crash(value: str) -> None:
    assert value in rejected({"headline": "x", "published_at": value}, "invalid_timestamp")


def test_a_number_out_of_float_range_is_invalid_json() -> None:
    """1e999 decoded to infinity, which PostgreSQL's json column refuses: the whole batch
    then fell back to one transaction per item before this one was dead-lettered."""
    assert "1e999" in rejected(b'{"headline": "x", "score": 1e999}', "invalid_json")
    assert parse(b'{"headline": "x", "score": 1.5e300}').extra == {"score": 1.5e300}


def test_published_at_from_1900_on_is_kept() -> None:
    kept = parse({"headline": "x", "published_at": "1900-01-01T00:00:00Z"}).published_at
    assert kept == datetime(1900, 1, 1, tzinfo=UTC)


def test_other_schema_version_is_rejected() -> None:
    assert "schema_version 2" in rejected({"headline": "x", "schema_version": 2}, "unsupported_version")


def test_ticker_with_spaces_is_rejected() -> None:
    rejected({"headline": "x", "tickers": ["BRK B"]}, "invalid_ticker")


def test_tickers_are_extracted_when_not_given() -> None:
    item = parse({"headline": "Goldman Sachs upgrades $aapl", "body": "Also $MSFT."})
    assert item.tickers == ("AAPL", "GS", "MSFT")
    assert parse({"headline": "Apple falls", "tickers": []}).tickers == ("AAPL",)  # empty = not given
    assert parse({"headline": "Apple falls", "tickers": ["TSLA"]}).tickers == ("TSLA",)  # given wins


def test_naive_receive_time_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_raw_news(b'{"headline": "x"}', received_at=datetime(2025, 1, 1), watchlist={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$AAPL beats, $msft lags", ["AAPL", "MSFT"]),
        ("Berkshire $BRK.B adds to stake", ["BRK.B"]),
        ("bought more $AAPL.", ["AAPL"]),  # a sentence dot is not a share class
        ("$AAPL's record quarter, $AAPL again", ["AAPL"]),  # possessive; unique
        ("Deal worth $100 million, a $5B buyback and $1.2bn in debt", []),  # money, not tickers
        ("US$5B deal; price$AAPL", []),
        ("Goldman  Sachs and apple team up", ["AAPL", "GS"]),  # case-insensitive, any whitespace
        ("Pineapple prices and Applebee's", []),  # whole words only
        ("McDonald's and Exxon Mobil report", ["MCD", "XOM"]),
        ("Nothing here", []),
    ],
)
def test_extract_tickers(text: str, expected: list[str]) -> None:
    assert extract_tickers(text, WATCHLIST) == expected


def test_default_watchlist() -> None:
    assert len(DEFAULT_WATCHLIST) >= 30
    assert all(ticker == ticker.upper() for ticker in DEFAULT_WATCHLIST.values())
    assert extract_tickers("Nvidia and JPMorgan Chase rally") == ["JPM", "NVDA"]
    assert extract_tickers("apple", {}) == []


def test_non_utf8_offset_counts_the_bom() -> None:
    assert "byte 0xff at offset 5" in rejected(b'\xef\xbb\xbf{"\xff', "invalid_utf8")


@pytest.mark.parametrize(
    "headline", ["https://t.co/bd0xbFGjkT", "https://example.com/a  https://t.co/x", " \u200b "]
)
def test_headline_with_no_text_besides_links_is_invalid(headline: str) -> None:
    """Such a headline would reach the model as an empty text; it goes to the DLQ instead."""
    with pytest.raises(InvalidMessage) as caught:
        parse_raw_news(
            json.dumps({"headline": headline}).encode(), received_at=datetime.now(UTC), watchlist={}
        )
    assert caught.value.error_type == "missing_headline"


def test_watchlist_trie_matches_what_a_longest_first_alternation_matches() -> None:
    """The trie regex (`services.schemas.tickers._names_pattern`) against the plain
    alternation it replaces, on random names sharing prefixes, case variants, multi-word
    names and punctuation, in random texts built from them."""
    import random
    import re

    from services.schemas.tickers import _compile_watchlist

    rng = random.Random(7)
    stems = ["ab", "Ab", "abc", "a.b", "ab c", "AB  cd", "b&c", "bc's", "x", "xy z", "é", "Ét"]
    for _ in range(300):
        names = rng.sample(stems, rng.randint(1, len(stems)))
        pattern, _lookup = _compile_watchlist(frozenset((n, "T") for n in names))
        assert pattern is not None
        ordered = sorted(names, key=len, reverse=True)
        alternation = "|".join(r"\s+".join(re.escape(w) for w in n.split()) for n in ordered)
        reference = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)
        pieces = [*stems, " ", "  ", "-", "q", "AB", "C", ".", "\t"]
        for _ in range(20):
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
            got = [m.span() for m in pattern.finditer(text)]
            assert got == [m.span() for m in reference.finditer(text)], (names, text)


def test_published_at_far_in_the_future_is_rejected() -> None:
    reason = rejected({"headline": "x", "published_at": "2099-01-01T00:00:00Z"}, "future_published_at")
    assert "2099-01-01" in reason and "future" in reason


def test_published_at_within_the_allowed_skew_is_kept() -> None:
    soon = RECEIVED + timedelta(minutes=59)
    assert parse({"headline": "x", "published_at": soon.isoformat()}).published_at == soon
    late = RECEIVED + timedelta(minutes=61)
    rejected({"headline": "x", "published_at": late.isoformat()}, "future_published_at")


def test_the_future_skew_is_configurable() -> None:
    in_two_days = (RECEIVED + timedelta(days=2)).isoformat()
    rejected({"headline": "x", "published_at": in_two_days}, "future_published_at")
    kept = parse({"headline": "x", "published_at": in_two_days}, max_future_skew=timedelta(days=3))
    assert kept.published_at == RECEIVED + timedelta(days=2)


@pytest.mark.parametrize(
    "bad", ["a\x1b[31mred", "a\nb", "a\rb", "a\x7f", "a\x85b", "a\u202eb", "a\u2028b", "a\tb"]
)
def test_control_characters_in_ids_are_rejected(bad: str) -> None:
    reason = rejected({"id": bad, "headline": "acme beats"}, "invalid_id")
    assert "control" in reason


@pytest.mark.parametrize("bad", ["AA\x1bPL", "MS\x85FT", "X\u202eY", "\x07"])
def test_control_characters_in_tickers_are_rejected(bad: str) -> None:
    rejected({"headline": "acme beats", "tickers": [bad]}, "invalid_ticker")
