"""A headline reduced to what stays the same when outlets re-publish a story.

Pure functions, no I/O. Syndicated copies differ by wire prefixes ("UPDATE 1-", "BREAKING:",
"RPT-"), trailing links and source tags ("- Reuters", "| Bloomberg", "via @WSJ"), casing,
HTML entities and punctuation; `normalise_headline` removes exactly those, and `shingles`
cuts what is left into overlapping word pairs, the unit the near-duplicate test compares.
Word pairs rather than single words: two different stories about the same company share
many words ("Boeing", "shares", "says") but few pairs of them in the same order.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
import unicodedata
from collections.abc import Callable
from typing import Final

_URL: Final = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# Wire-service and newsroom prefixes, possibly stacked ("BREAKING: UPDATE 2-").
_PREFIX: Final = re.compile(
    r"^\s*(?:(?:update|updated|corrected|refile|rpt|repeat|wrapup|exclusive|breaking|flash|alert|"
    r"urgent|just in|developing|live|watch|video|analysis|factbox|instant view|preview|"
    r"market talk|hot stock|press release)(?:\s*\d+)?\s*(?:[-:|\u2014\u2013]|\s-\s)\s*|\[[^\]]{0,30}\]\s*|"
    r"\([^)]{0,30}\)\s*)+",
    re.IGNORECASE,
)
# Trailing source tags, tried in this order: "(AP)", "via @WSJ", "- Reuters" / "| Bloomberg News".
# Each with a test of what it needs in the text (skipping a pattern that cannot match).
_SOURCE_SUFFIXES: Final[tuple[tuple[re.Pattern[str], Callable[[str], bool]], ...]] = (
    (re.compile(r"\s*\([^)]{1,40}\)\s*$"), lambda t: ")" in t),
    (
        re.compile(r"\s+via\s+@?\S+(?:\s+\S+)?\s*$", re.IGNORECASE),
        lambda t: "via" in t.lower() or "\u0131" in t or "\u0130" in t,
    ),
    (
        re.compile(r"\s+[-|\u2014\u2013:]\s+[^-|\u2014\u2013:]{1,40}$"),
        lambda t: any(c in t for c in "-|\u2014\u2013:"),
    ),
)
# "(CATY)" after a company name is its ticker, not a source tag: kept as a cashtag.
_PAREN_TICKER: Final = re.compile(r"\((?!(?:AP|AFP|UPI|WSJ|FT|BBC|CNBC|DJ|PR|UPDATE)\))([A-Z]{1,5})\)")
_MENTION: Final = re.compile(r"(?<!\w)@\w+")
# Punctuation and spaces, then the dots that are not a decimal point (two passes: the same
# result as one pattern with both, the lookarounds tried only where there is a dot).
_NON_WORD: Final = re.compile(r"[^\w$%.]+")
_NON_DECIMAL_DOT: Final = re.compile(r"(?<!\d)\.|\.(?!\d)")
_SPACE: Final = re.compile(r"\s+")
_MAX_SUFFIX_PASSES: Final = 3


def normalise_headline(headline: str) -> str:
    """Lower-case words of `headline` without wire prefixes, links, source tags and
    punctuation; cashtags keep their `$`, numbers their decimal point ("$BA", "2.5%").

    Every pattern is tried only when the text holds a character it needs (a `(`, an `@`, …):
    the same result, in half the time (the scorer normalises every item it stores)."""
    text = unicodedata.normalize("NFKC", html.unescape(html.unescape(headline)))  # feeds double-escape
    lowered = text.lower()  # after NFKC: IGNORECASE matches nothing lower() does not show
    if "http" in lowered or "www." in lowered:
        text = _URL.sub(" ", text)
    if "(" in text:
        text = _PAREN_TICKER.sub(r"$\1", text)
    text = _PREFIX.sub("", " ".join(text.split()))
    for _ in range(_MAX_SUFFIX_PASSES):  # "… - Reuters (AP) via @x"
        for suffix, needs in _SOURCE_SUFFIXES:
            if not needs(text):
                continue
            stripped = suffix.sub("", text).strip()
            if stripped != text and len(stripped.split()) >= 3:  # never strip a headline to nothing
                text = stripped
                break
        else:
            break
    if "@" in text:
        text = _MENTION.sub(" ", text)
    text = _NON_WORD.sub(" ", text.casefold())
    if "." in text:
        text = _NON_DECIMAL_DOT.sub(" ", text)
    return " ".join(text.split())


def shingles(normalised: str) -> frozenset[str]:
    """The word pairs of a normalised headline (its single word, if it has one)."""
    words = normalised.split()
    if len(words) < 2:
        return frozenset(words)
    return frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def cashtags(normalised: str) -> frozenset[str]:
    """The `$TICKER` words of a normalised headline."""
    return frozenset(w for w in normalised.split() if w.startswith("$") and len(w) > 1 and not w[1].isdigit())


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Shared shingles over all shingles of the two; 0.0 when either is empty."""
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def text_key(normalised: str) -> int:
    """A signed 64-bit key of a normalised headline (BIGINT, SQLite INTEGER): items with the
    same key are exact copies, with the same shingles and band keys. BLAKE2b, so every worker
    and replay computes the same key. A collision (p ~ n²/2⁶⁵) could only make an item be
    looked up under another text's band keys, and be missed as a candidate; joining still
    takes its own shingles' exact similarity."""
    digest = hashlib.blake2b(normalised.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
