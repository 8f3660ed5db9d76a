"""Ingest: getting news into `news.raw` from files, HTTP and feeds, validated and keyed by event_id.

Pure parts (file rows, pacing, feed parsing, request validation) are separate from the thin
I/O shells that sleep, fetch, serve and produce, so they are tested without a network.
"""

from services.ingest.encoding import EncodedNews, encode_news
from services.ingest.feed_source import FeedEntry, FeedError, FeedPoller, PollResult, parse_feed, run_poller
from services.ingest.file_source import FileRecord, NewsFileError, read_news_file
from services.ingest.pacing import pace, sleep_through
from services.ingest.producer import NewsProducer, NewsSender
from services.ingest.replay import ReplayCounts, replay

__all__ = [
    "EncodedNews",
    "FeedEntry",
    "FeedError",
    "FeedPoller",
    "FileRecord",
    "NewsFileError",
    "NewsProducer",
    "NewsSender",
    "PollResult",
    "ReplayCounts",
    "encode_news",
    "pace",
    "parse_feed",
    "read_news_file",
    "replay",
    "run_poller",
    "sleep_through",
]
