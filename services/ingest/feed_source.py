"""Polling an RSS 2.0 / RSS 1.0 / Atom feed or a JSON feed into `news.raw`.

`parse_feed` is pure: bytes in, `FeedEntry`s out. `FeedPoller` adds fetching and memory of
what it already sent, so each entry goes out once per process; re-sends after a restart
are harmless because the scorer upserts by event_id.

XML safety: defusedxml parses, with DTDs forbidden. Feeds never need one, and refusing it
rules out entity expansion ("billion laughs") and external entities whatever the
document's encoding: a byte pattern that looks for `<!DOCTYPE` misses it in UTF-16
without a byte-order mark, which expat still reads. The byte check stays as a cheap first
look that answers the common case with a clear message.

Fetching (services.outbound): the feed's host and every redirect hop are checked against
FINSENT_OUTBOUND_ALLOW at connect time, a hop must stay http(s), hops are bounded, and the
whole fetch, body included, has one deadline. A feed URL may carry credentials
(`user:pass@`, `?apikey=`): `feed_label` is what items and messages show instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from services.broker.errors import BrokerError
from services.ingest.encoding import EncodedNews, encode_news
from services.ingest.producer import NewsSender
from services.outbound import DestinationDenied, OutboundError, OutboundPolicy, request
from services.schemas import InvalidMessage

log = logging.getLogger(__name__)

DEFAULT_FETCH_TIMEOUT_S = 20.0
DEFAULT_MAX_FEED_BYTES = 10_000_000
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_REMEMBER = 100_000  # entry keys kept per process; the oldest are forgotten first
# New entries sent per poll, as many as one POST /news may hold: a 10 MB document can list
# hundreds of thousands of tiny entries, and a feed that renames them all at every poll
# would otherwise flood news.raw. The rest are not remembered, so the next poll sends them.
DEFAULT_MAX_NEW_ENTRIES = 10_000
USER_AGENT = "finsent-feed-poller/1"
_UTF16_STARTS = (b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

# Element local names (lower case) per field, in order of preference.
_ENTRY_TAGS = ("item", "entry")
_TITLE_TAGS = ("title",)
_BODY_TAGS = ("description", "summary", "content", "encoded")
_DATE_TAGS = ("pubdate", "published", "date", "issued", "updated", "modified")
_ID_TAGS = ("guid", "id")
# JSON feed keys per field (JSON Feed 1.1 names, and common alternatives).
_JSON_BODY_KEYS = ("summary", "content_text", "description", "body", "content_html")
_JSON_URL_KEYS = ("url", "link", "external_url")
_JSON_DATE_KEYS = (
    "published_at",
    "date_published",
    "published",
    "pubDate",
    "date",
    "updated",
    "date_modified",
)


class FeedError(ValueError):
    """The feed cannot be fetched or is not a feed; one line naming the URL."""


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One entry as a `news.raw` dict, with the key that identifies it within its feed."""

    key: str  # the entry's guid/id, else its link, else its headline
    item: dict[str, Any]


# --------------------------------------------------------------------------- pure parsing


def parse_feed(content: bytes, *, feed_url: str) -> list[FeedEntry]:
    """Entries of an RSS/Atom (XML) or JSON feed document, in document order."""
    start = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"{", b"["):
        return parse_json_feed(content, feed_url=feed_url)
    if start == b"<" or content[:2] in _UTF16_STARTS:  # expat reads UTF-16, with a BOM or without
        return parse_xml_feed(content, feed_url=feed_url)
    raise FeedError(f"{feed_url}: not an RSS, Atom or JSON feed")


def parse_xml_feed(content: bytes, *, feed_url: str) -> list[FeedEntry]:
    refused = f"{feed_url}: the feed declares a DOCTYPE or entities; refused for safety"
    if _DOCTYPE.search(content):
        raise FeedError(refused)
    try:
        root = safe_fromstring(content, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise FeedError(refused) from None
    except (ET.ParseError, ValueError, LookupError) as exc:  # also an encoding expat cannot read
        raise FeedError(f"{feed_url}: not well-formed XML: {exc}") from None
    channel = _first_child(root, ("channel",)) if _local(root.tag) in ("rss", "rdf") else root
    feed_title = _text(_first_child(channel, _TITLE_TAGS)) if channel is not None else None
    source = feed_title or feed_url
    entries = []
    for element in root.iter():
        if _local(element.tag) in _ENTRY_TAGS:
            entry = _xml_entry(element, source)
            if entry is not None:
                entries.append(entry)
    return entries


def _xml_entry(element: ET.Element, source: str) -> FeedEntry | None:
    headline = _text(_first_child(element, _TITLE_TAGS))
    url = _entry_link(element)
    body = _text(_first_child(element, _BODY_TAGS))
    published = _first_child(element, _DATE_TAGS)
    published_at = parse_feed_date(_raw_text(published)) if published is not None else None
    entry_id = _raw_text(_first_child(element, _ID_TAGS)).strip()
    return _entry(
        key=entry_id or url or headline,
        headline=headline,
        body=body,
        url=url,
        published_at=published_at,
        source=source,
    )


def _entry_link(element: ET.Element) -> str | None:
    links = [child for child in element if _local(child.tag) == "link"]
    for link in links:  # Atom: <link rel="alternate" href="..."/>, rel defaults to alternate
        if link.get("href") and link.get("rel", "alternate") == "alternate":
            return link.get("href", "").strip() or None
    for link in links:
        text = (link.text or link.get("href") or "").strip()
        if text:
            return text
    return None


def parse_json_feed(content: bytes, *, feed_url: str) -> list[FeedEntry]:
    """A list of objects, or an object with an `items` list (JSON Feed 1.x and similar).

    Objects that already have a `headline` are news.raw messages and pass through as they
    are (with the feed title as `source` if they have none); others are mapped by field name.
    """
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise FeedError(f"{feed_url}: not valid JSON: {exc}") from None
    feed_title = None
    if isinstance(data, dict):
        feed_title = data.get("title") if isinstance(data.get("title"), str) else None
        data = data.get("items")
    if not isinstance(data, list):
        raise FeedError(f"{feed_url}: a JSON feed must be a list of objects or an object with an items list")
    source = (feed_title or "").strip() or feed_url
    entries = []
    for obj in data:
        if not isinstance(obj, dict):
            continue
        entry = _json_entry(obj, source)
        if entry is not None:
            entries.append(entry)
    return entries


def _json_entry(obj: Mapping[str, Any], source: str) -> FeedEntry | None:
    key = next((str(obj[k]) for k in ("id", "guid") if isinstance(obj.get(k), str | int)), None)
    if "headline" in obj:
        return _news_raw_entry(obj, key, source)
    headline = _clean(obj["title"]) if isinstance(obj.get("title"), str) else None
    url = next(
        (obj[k].strip() for k in _JSON_URL_KEYS if isinstance(obj.get(k), str) and obj[k].strip()), None
    )
    body = next(
        (_clean(obj[k]) for k in _JSON_BODY_KEYS if isinstance(obj.get(k), str) and obj[k].strip()), None
    )
    date = next((obj[k] for k in _JSON_DATE_KEYS if isinstance(obj.get(k), str)), None)
    entry = _entry(
        key=key or url or headline,
        headline=headline,
        body=body,
        url=url,
        published_at=parse_feed_date(date) if date else None,
        source=source,
    )
    if entry is not None and isinstance(obj.get("tickers"), list):
        entry.item["tickers"] = obj["tickers"]
    return entry


def _news_raw_entry(obj: Mapping[str, Any], key: str | None, source: str) -> FeedEntry | None:
    """An object that is already a news.raw message: sent as it is (the schema judges it)."""
    item = dict(obj)
    item.setdefault("source", source)
    url = item.get("url") if isinstance(item.get("url"), str) else None
    headline = item["headline"] if isinstance(item["headline"], str) else None
    identity = key or url or headline
    return FeedEntry(identity, item) if identity else None


def _entry(
    *,
    key: str | None,
    headline: str | None,
    body: str | None,
    url: str | None,
    published_at: str | None,
    source: str,
) -> FeedEntry | None:
    """The news.raw dict of an entry; None for an entry with nothing to identify it by."""
    if not key:
        return None
    item: dict[str, Any] = {"headline": headline or "", "source": source}
    if body:
        item["body"] = body
    if url:
        item["url"] = url
    if published_at:
        item["published_at"] = published_at
    return FeedEntry(key, item)


def parse_feed_date(value: str) -> str | None:
    """RFC 822 (RSS) or ISO 8601 (Atom, JSON Feed) as ISO 8601 in UTC; None if unreadable.

    A timestamp without a zone is taken as UTC: feeds that omit the zone almost always mean
    it, and dropping the timestamp would make event time the time of polling instead.
    """
    value = value.strip()
    if not value:
        return None
    parsed: datetime | None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC).isoformat()
    except OverflowError:  # year 1 or 9999 shifted out of range by its zone
        return None


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "li"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _clean(text: str) -> str:
    """Feed text as plain text: HTML tags dropped, entities decoded, whitespace collapsed."""
    if "<" in text or "&" in text:
        parser = _TextExtractor()
        parser.feed(text)
        parser.close()
        text = "".join(parser.parts)
    return " ".join(text.split())


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _first_child(element: ET.Element, names: Iterable[str]) -> ET.Element | None:
    children = [child for child in element]
    for name in names:
        for child in children:
            if _local(child.tag) == name:
                return child
    return None


def _raw_text(element: ET.Element | None) -> str:
    return "".join(element.itertext()) if element is not None else ""


def _text(element: ET.Element | None) -> str | None:
    return _clean(_raw_text(element)) or None


# --------------------------------------------------------------------------- I/O shell


def fetch_url(
    url: str,
    *,
    timeout: float = DEFAULT_FETCH_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_FEED_BYTES,
    policy: OutboundPolicy | None = None,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
) -> bytes:
    """GET an http(s) `url` within `timeout` seconds in all (redirects and body included);
    `FeedError`, naming the URL by its label, for a refused destination or redirect, HTTP
    errors, network errors, oversized documents. `policy`: public addresses only if None."""
    try:
        check_feed_url(url)
    except ValueError as exc:
        raise FeedError(str(exc)) from None
    label = feed_label(url)
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
        "application/json, application/xml;q=0.9, */*;q=0.5",
    }
    try:
        response = request(
            "GET",
            url,
            policy=policy or OutboundPolicy(),
            deadline=timeout,
            headers=headers,
            max_bytes=max_bytes,
            max_redirects=max_redirects,
        )
    except (DestinationDenied, OutboundError) as exc:
        raise FeedError(f"{label}: {exc}") from None
    if not 200 <= response.status < 300:
        raise FeedError(f"{label}: HTTP {response.status}")
    return response.body


def check_feed_url(url: str) -> str:
    """`url` if it is http(s); `ValueError` otherwise (urllib would also open file:// and ftp://)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"feed URL must be http:// or https://, got {feed_label(url)!r}")
    return url


def feed_label(url: str) -> str:
    """The feed URL as items and messages show it: no `user:pass@`, no query, no fragment
    (API keys live there). Items from a feed without a title carry it as their `source`."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


@dataclass(slots=True)
class PollResult:
    fetched: int = 0  # entries in the document
    sent: int = 0  # new entries sent now
    skipped: int = 0  # new entries that are not valid news items (reported once, never sent)
    deferred: int = 0  # new entries over the per-poll limit, left for the next poll


class FeedPoller:
    """Fetches one feed and sends the entries it has not sent before."""

    def __init__(
        self,
        url: str,
        *,
        fetch: Callable[[str], bytes] | None = None,
        remember: int = DEFAULT_REMEMBER,
        policy: OutboundPolicy | None = None,
        timeout: float = DEFAULT_FETCH_TIMEOUT_S,
        max_new_entries: int = DEFAULT_MAX_NEW_ENTRIES,
    ) -> None:
        self.url = check_feed_url(url)
        self.label = feed_label(url)
        self._fetch = fetch or (lambda u: fetch_url(u, timeout=timeout, policy=policy))
        self._remember = remember
        self._max_new = max_new_entries
        # keys by their SHA-256: a feed chooses its keys' length, the memory holds 32 bytes each
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        return _digest(key) in self._seen

    def _mark(self, keys: Iterable[str]) -> None:
        for key in keys:
            digest = _digest(key)
            self._seen[digest] = None
            self._seen.move_to_end(digest)
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)

    def poll(
        self, sender: NewsSender, *, on_skip: Callable[[FeedEntry, str], None] | None = None
    ) -> PollResult:
        """Fetch, send new valid entries, flush; only then remember them as sent.

        If sending fails (`BrokerError`), nothing is remembered and the next poll sends the
        entries again. Raises `FeedError` when the feed cannot be fetched or parsed.
        """
        entries = parse_feed(self._fetch(self.url), feed_url=self.label)
        result = PollResult(fetched=len(entries))
        batch: dict[str, EncodedNews] = {}  # by key: a feed that repeats an entry sends it once
        invalid: list[str] = []
        for entry in entries:
            if self.seen(entry.key) or entry.key in batch:
                continue
            if len(batch) + len(invalid) >= self._max_new:
                result.deferred += 1
                continue
            try:
                batch[entry.key] = encode_news(entry.item)
            except InvalidMessage as exc:
                result.skipped += 1
                invalid.append(entry.key)
                if on_skip is not None:
                    on_skip(entry, exc.reason)
        for encoded in batch.values():
            sender.send_encoded(encoded)
        sender.flush()
        result.sent = len(batch)
        self._mark([*batch, *invalid])
        if result.deferred:
            log.warning(
                "%s: %d new entries over the limit of %d per poll wait for the next poll",
                self.label,
                result.deferred,
                self._max_new,
            )
        return result


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def run_poller(
    poller: FeedPoller,
    sender: NewsSender,
    *,
    interval: float,
    stop: threading.Event,
    on_result: Callable[[PollResult], None] = lambda result: None,
    on_skip: Callable[[FeedEntry, str], None] | None = None,
    on_error: Callable[[Exception], None] = lambda exc: None,
    max_polls: int | None = None,
) -> int:
    """Poll every `interval` seconds until `stop` is set (or `max_polls`); return the number sent.

    A failed poll (feed or broker down) is reported to `on_error` and retried at the next
    interval: a long-running poller outlives outages of either side.
    """
    sent = 0
    polls = 0
    while not stop.is_set():
        try:
            result = poller.poll(sender, on_skip=on_skip)
            sent += result.sent
            on_result(result)
        except (FeedError, BrokerError) as exc:
            on_error(exc)
        polls += 1
        if max_polls is not None and polls >= max_polls:
            break
        stop.wait(interval)
    return sent
