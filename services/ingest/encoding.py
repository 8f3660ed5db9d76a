"""Turning a news dict into the exact bytes and key that go onto `news.raw`.

Every source validates with the scorer's own `parse_raw_news` before sending, so the key is
the very `event_id` the scorer will compute, and a source can tell its caller which item is
wrong instead of leaving it to the dead-letter topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.schemas import InvalidMessage, parse_raw_news
from services.settings import get_settings


@dataclass(frozen=True, slots=True)
class EncodedNews:
    """A validated message: its Kafka key (the event id) and value (UTF-8 JSON)."""

    event_id: str
    payload: bytes


def encode_news(item: Any, *, received_at: datetime | None = None) -> EncodedNews:
    """JSON-encode `item` and validate it as a `news.raw` message; raise `InvalidMessage` if it is not one.

    The payload is the item as given (not the normalised form): what the scorer receives is
    what the source sent, and schema normalisation happens in exactly one place, the scorer.
    """
    try:
        text = json.dumps(item, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        payload = text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # a datetime or NaN in a dict, an unpaired surrogate
        raise InvalidMessage(f"item cannot be encoded as JSON: {exc}", "wrong_type") from None
    except RecursionError:  # decoded just short of the recursion limit, encoded from deeper down
        raise InvalidMessage("item is nested too deeply to encode as JSON", "invalid_json") from None
    # Ticker extraction is the scorer's business; an empty watchlist keeps validation cheap.
    # The worker's own bound on future dates, so ingest refuses what the worker would dead-letter.
    skew = timedelta(seconds=get_settings().scorer.max_future_skew_seconds)
    news = parse_raw_news(
        payload, received_at=received_at or datetime.now(UTC), watchlist={}, max_future_skew=skew
    )
    return EncodedNews(news.event_id, payload)
