"""Feed parsing (RSS 2.0, Atom, JSON) and the poller's send-once memory, without a network."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from services.broker.errors import BrokerError
from services.ingest.encoding import EncodedNews
from services.ingest.feed_source import (
    FeedError,
    FeedPoller,
    fetch_url,
    parse_feed,
    parse_feed_date,
    run_poller,
)

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
  <channel>
    <title>Market Wire</title>
    <link>https://wire.example/</link>
    <item>
      <title>Oil slumps as OPEC+ adds supply</title>
      <link>https://wire.example/oil</link>
      <description>&lt;p&gt;Brent fell &lt;b&gt;4%&lt;/b&gt; &amp;amp; WTI followed.&lt;/p&gt;</description>
      <pubDate>Thu, 02 Jan 2025 14:30:00 +0100</pubDate>
      <guid isPermaLink="false">wire-1</guid>
    </item>
    <item>
      <title><![CDATA[$AAPL beats on earnings]]></title>
      <link>https://wire.example/aapl</link>
      <pubDate>Thu, 02 Jan 2025 15:00:00 GMT</pubDate>
    </item>
    <item>
      <description>An item without a title</description>
      <guid>wire-3</guid>
    </item>
  </channel>
</rss>
"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="text">Central Bank Watch</title>
  <id>urn:uuid:feed</id>
  <entry>
    <title>Fed holds rates steady</title>
    <link rel="self" href="https://cb.example/self/1"/>
    <link href="https://cb.example/fed"/>
    <id>urn:uuid:entry-1</id>
    <updated>2025-01-03T09:00:00Z</updated>
    <published>2025-01-02T20:00:00-05:00</published>
    <summary type="html">Powell &lt;em&gt;signals&lt;/em&gt; patience</summary>
    <source><title>Not the feed title</title></source>
  </entry>
  <entry>
    <title>ECB trims deposit rate</title>
    <link rel="alternate" href="https://cb.example/ecb"/>
    <id>urn:uuid:entry-2</id>
    <updated>2025-01-04T08:00:00Z</updated>
    <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">Rates <b>cut</b> by 25bp</div></content>
  </entry>
</feed>
"""


def test_rss_2_entries() -> None:
    entries = parse_feed(RSS, feed_url="https://wire.example/rss")
    assert [e.key for e in entries] == ["wire-1", "https://wire.example/aapl", "wire-3"]
    assert entries[0].item == {
        "headline": "Oil slumps as OPEC+ adds supply",
        "source": "Market Wire",
        "body": "Brent fell 4% & WTI followed.",
        "url": "https://wire.example/oil",
        "published_at": "2025-01-02T13:30:00+00:00",
    }
    assert entries[1].item["headline"] == "$AAPL beats on earnings"
    assert entries[1].item["published_at"] == "2025-01-02T15:00:00+00:00"
    assert entries[2].item["headline"] == ""  # kept, so the poller reports it as invalid once


def test_atom_entries() -> None:
    entries = parse_feed(ATOM, feed_url="https://cb.example/atom")
    assert [e.key for e in entries] == ["urn:uuid:entry-1", "urn:uuid:entry-2"]
    assert entries[0].item == {
        "headline": "Fed holds rates steady",
        "source": "Central Bank Watch",
        "body": "Powell signals patience",
        "url": "https://cb.example/fed",  # the alternate link, not rel="self"
        "published_at": "2025-01-03T01:00:00+00:00",  # <published> wins over <updated>
    }
    assert entries[1].item["body"] == "Rates cut by 25bp"
    assert entries[1].item["published_at"] == "2025-01-04T08:00:00+00:00"


def test_json_feed_object_with_items() -> None:
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Deals Daily",
        "items": [
            {
                "id": 17,
                "title": "Acme to acquire Globex",
                "url": "https://deals.example/17",
                "content_html": "<p>All-stock <i>deal</i></p>",
                "date_published": "2025-01-05T07:00:00+09:00",
                "tickers": ["ACME"],
            },
            "not an object",
            {"headline": "Already news.raw", "id": "n-1", "body": "kept as is", "extra_field": 1},
        ],
    }
    entries = parse_feed(json.dumps(feed).encode(), feed_url="https://deals.example/feed.json")
    assert [e.key for e in entries] == ["17", "n-1"]
    assert entries[0].item == {
        "headline": "Acme to acquire Globex",
        "source": "Deals Daily",
        "body": "All-stock deal",
        "url": "https://deals.example/17",
        "published_at": "2025-01-04T22:00:00+00:00",
        "tickers": ["ACME"],
    }
    assert entries[1].item == {
        "headline": "Already news.raw",
        "id": "n-1",
        "body": "kept as is",
        "extra_field": 1,
        "source": "Deals Daily",
    }


def test_json_feed_plain_list_uses_the_url_as_source() -> None:
    entries = parse_feed(
        b' [{"title": "Gold hits record", "link": "https://m.example/g"}]', feed_url="https://m.example/f"
    )
    assert entries[0].item == {
        "headline": "Gold hits record",
        "source": "https://m.example/f",
        "url": "https://m.example/g",
    }
    assert entries[0].key == "https://m.example/g"


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaa">]><rss><title>&a;</title></rss>',
        b'<?xml version="1.0"?>\n<!doctype rss SYSTEM "file:///etc/passwd"><rss/>',
        b'<rss><!ENTITY x "y"></rss>',
    ],
)
def test_doctype_and_entities_are_refused(document: bytes) -> None:
    with pytest.raises(FeedError, match="DOCTYPE or entities; refused"):
        parse_feed(document, feed_url="https://evil.example/")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"<rss><channel>", "not well-formed XML"),
        (b"hello", "not an RSS, Atom or JSON feed"),
        (b'{"items": 3}', "a JSON feed must be a list"),
        (b"[1, 2", "not valid JSON"),
        # these raised RecursionError, LookupError or ValueError, which ended the poller
        (b'{"items": ' + b"[" * 5000 + b"]" * 5000 + b"}", "not valid JSON"),
        (b'<?xml version="1.0" encoding="x-unknown"?><rss/>', "not well-formed XML"),
        (b'<?xml version="1.0" encoding="utf-32"?><rss/>', "not well-formed XML"),
    ],
)
def test_broken_documents(document: bytes, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        parse_feed(document, feed_url="https://x.example/")


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("Thu, 02 Jan 2025 14:30:00 +0100", "2025-01-02T13:30:00+00:00"),
        ("Thu, 02 Jan 2025 14:30:00 GMT", "2025-01-02T14:30:00+00:00"),
        ("Thu, 02 Jan 2025 14:30:00 -0000", "2025-01-02T14:30:00+00:00"),
        ("2025-01-02T14:30:00.5Z", "2025-01-02T14:30:00.500000+00:00"),
        ("2025-01-02T14:30:00", "2025-01-02T14:30:00+00:00"),  # no zone: taken as UTC
        ("yesterday", None),
        ("", None),
        # no UTC time, or no date at all: unreadable, where they raised OverflowError
        ("Fri, 31 Dec 9999 23:59:59 -1400", None),
        ("0001-01-01T00:00:00+14:00", None),
        ("Fri, 31 Dec 99999999999999999999 23:59:59 +0000", None),
    ],
)
def test_parse_feed_date(value: str, iso: str | None) -> None:
    assert parse_feed_date(value) == iso


class FakeSender:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[EncodedNews] = []
        self.fail = fail

    def send_encoded(self, encoded: EncodedNews) -> None:
        self.sent.append(encoded)

    def flush(self, timeout: float | None = None) -> None:
        if self.fail:
            raise BrokerError("broker down")

    def deliver(self, batch: Any, *, timeout: float) -> None:
        raise AssertionError("not used")


def test_poller_sends_each_entry_once_and_reports_invalid_once() -> None:
    documents = [
        RSS,
        RSS.replace(b"</channel>", b"<item><title>New story</title><guid>wire-4</guid></item></channel>"),
    ]
    poller = FeedPoller("https://wire.example/rss", fetch=lambda url: documents.pop(0))
    sender = FakeSender()
    skipped: list[str] = []
    first = poller.poll(sender, on_skip=lambda entry, reason: skipped.append(f"{entry.key}: {reason}"))
    assert (first.fetched, first.sent, first.skipped) == (3, 2, 1)
    assert skipped == ["wire-3: headline is empty"]
    second = poller.poll(sender, on_skip=lambda entry, reason: skipped.append(entry.key))
    assert (second.fetched, second.sent, second.skipped) == (4, 1, 0)
    assert len(sender.sent) == 3 and len(skipped) == 1
    assert json.loads(sender.sent[-1].payload)["headline"] == "New story"


def test_poller_forgets_nothing_it_could_not_send() -> None:
    poller = FeedPoller("https://wire.example/rss", fetch=lambda url: RSS)
    with pytest.raises(BrokerError):
        poller.poll(FakeSender(fail=True))
    assert not poller.seen("wire-1")
    retry = FakeSender()
    assert poller.poll(retry).sent == 2  # sent again on the next poll, same keys (event ids)
    assert poller.seen("wire-1")


def test_a_hostile_document_fails_one_poll_and_the_poller_goes_on(python_recursion_limit: int) -> None:
    deep = b"[" + b'{"title": "x", "a": ' * 1200 + b"1" + b"}" * 1200 + b"]"
    dated = RSS.replace(b"Thu, 02 Jan 2025 15:00:00 GMT", b"Fri, 31 Dec 9999 23:59:59 -1400")
    documents = [deep, dated]
    poller = FeedPoller("https://wire.example/rss", fetch=lambda url: documents.pop(0))
    errors: list[Exception] = []
    sent = run_poller(
        poller, FakeSender(), interval=0, stop=threading.Event(), on_error=errors.append, max_polls=2
    )
    assert [type(e) for e in errors] == [FeedError] and sent == 2  # the date is dropped, not fatal


def test_poller_memory_is_bounded() -> None:
    poller = FeedPoller("https://wire.example/rss", fetch=lambda url: RSS, remember=2)
    poller.poll(FakeSender())
    assert not poller.seen("wire-1") and poller.seen("wire-3")  # the oldest key is forgotten


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x.example/feed", "wire.example/rss"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match="must be http"):
        FeedPoller(url)
    with pytest.raises(FeedError, match="must be http"):
        fetch_url(url)


def test_new_entries_per_poll_are_bounded_and_the_rest_wait_for_the_next_poll() -> None:
    document = json.dumps([{"id": f"e{i}", "title": f"Story {i}"} for i in range(5)]).encode()
    poller = FeedPoller("https://wire.example/feed.json", fetch=lambda url: document, max_new_entries=2)
    sender = FakeSender()
    results = [poller.poll(sender) for _ in range(4)]
    assert [(r.sent, r.deferred) for r in results] == [(2, 3), (2, 1), (1, 0), (0, 0)]
    assert sorted(json.loads(e.payload)["headline"] for e in sender.sent) == [f"Story {i}" for i in range(5)]


def test_remembered_keys_cost_the_same_whatever_their_length() -> None:
    long_key = "k" * 1_000_000  # a feed chooses its guids' length
    document = json.dumps([{"id": long_key, "title": "Story"}]).encode()
    poller = FeedPoller("https://wire.example/feed.json", fetch=lambda url: document)
    assert poller.poll(FakeSender()).sent == 1
    assert poller.seen(long_key) and poller.poll(FakeSender()).sent == 0
    assert all(len(key) == 32 for key in poller._seen)
