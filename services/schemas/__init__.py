"""Message schemas shared by every producer and consumer of the pipeline (pure, no I/O)."""

from services.schemas.news_raw import (
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    InvalidMessage,
    NewsItem,
    RawNews,
    derive_event_id,
    parse_raw_news,
)
from services.schemas.tickers import DEFAULT_WATCHLIST, Watchlist, extract_tickers, normalise_tickers
from services.schemas.watchlist import WatchlistError, load_watchlist, parse_watchlist

__all__ = [
    "DEFAULT_WATCHLIST",
    "MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "InvalidMessage",
    "NewsItem",
    "RawNews",
    "Watchlist",
    "WatchlistError",
    "derive_event_id",
    "extract_tickers",
    "load_watchlist",
    "normalise_tickers",
    "parse_raw_news",
    "parse_watchlist",
]
