"""Ticker extraction: cashtags ($AAPL, $BRK.B) and watchlist company names in free text.

Pure functions, no I/O. Messages that arrive without `tickers` get them from here, so
per-ticker alerts and dashboards also cover feeds that only carry a headline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

# A cashtag starts with a letter, so money amounts ($100, $5B, $1.2bn) are never tickers.
# An optional one- or two-letter share class follows a dot ($BRK.B); a trailing sentence
# dot ("bought $AAPL.") is not a class. Not preceded by a word character or `$` (US$5B).
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,5}(?:\.[A-Za-z]{1,2})?)(?!\w)")

# Large listed companies -> ticker. Names that are ordinary words in news ("Visa", "Target",
# "Block") are left out: they would tag too many unrelated headlines.
DEFAULT_WATCHLIST: Mapping[str, str] = {
    "Apple": "AAPL",
    "Microsoft": "MSFT",
    "Amazon": "AMZN",
    "Alphabet": "GOOGL",
    "Google": "GOOGL",
    "Meta Platforms": "META",
    "Facebook": "META",
    "Nvidia": "NVDA",
    "Tesla": "TSLA",
    "Berkshire Hathaway": "BRK.B",
    "JPMorgan": "JPM",
    "JPMorgan Chase": "JPM",
    "Goldman Sachs": "GS",
    "Morgan Stanley": "MS",
    "Bank of America": "BAC",
    "Citigroup": "C",
    "Wells Fargo": "WFC",
    "Exxon Mobil": "XOM",
    "ExxonMobil": "XOM",
    "Chevron": "CVX",
    "Johnson & Johnson": "JNJ",
    "Pfizer": "PFE",
    "Eli Lilly": "LLY",
    "UnitedHealth": "UNH",
    "Walmart": "WMT",
    "Costco": "COST",
    "Home Depot": "HD",
    "Procter & Gamble": "PG",
    "Coca-Cola": "KO",
    "PepsiCo": "PEP",
    "McDonald's": "MCD",
    "Disney": "DIS",
    "Netflix": "NFLX",
    "Intel": "INTC",
    "Advanced Micro Devices": "AMD",
    "Broadcom": "AVGO",
    "Oracle": "ORCL",
    "Salesforce": "CRM",
    "Adobe": "ADBE",
    "IBM": "IBM",
    "Cisco": "CSCO",
    "Qualcomm": "QCOM",
    "Boeing": "BA",
    "General Motors": "GM",
    "Mastercard": "MA",
    "Nike": "NKE",
    "Starbucks": "SBUX",
    "PayPal": "PYPL",
    "Caterpillar": "CAT",
}


_GAP = " "  # a trie unit: the gap between two words of a name, any run of whitespace in the text


def _names_pattern(names: Iterable[str]) -> str:
    """One regex matching any of `names`, built as a trie: `(?:A(?:pple|mazon)|Nvidia)`.

    The plain alternation `Amazon|Apple|Nvidia|…` makes the regex engine try every name at
    every word start (32 µs per headline with the default watchlist, on the scorer's model
    thread, holding the GIL); the trie tries one branch per character (7.5 µs). A name that
    is a prefix of another ends in an optional group, tried longer first, so where names
    overlap the longest one that ends at a word boundary wins, as in a longest-first
    alternation. Any run of whitespace in the text matches a space in a name ("Goldman  Sachs").
    """
    trie: dict[str, Any] = {}
    for name in names:
        node = trie
        for k, part in enumerate(name.split()):
            for unit in ([_GAP] if k else []) + [_fold(c) for c in part]:
                node = node.setdefault(unit, {})
        node[""] = {}  # a name ends here

    def emit(node: dict[str, Any]) -> str:
        branches = [
            (r"\s+" if unit == _GAP else re.escape(unit)) + emit(child)
            for unit, child in sorted(node.items())
            if unit
        ]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


def _fold(char: str) -> str:
    """The trie key of a letter: its lower case, which an IGNORECASE pattern matches exactly as
    it matches the letter itself, so "Apple" and "APPLE" share one branch."""
    lower = char.lower()
    return lower if len(lower) == 1 else char


@lru_cache(maxsize=8)
def _compile_watchlist(entries: frozenset[tuple[str, str]]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    # Keyed by a frozenset: callers with a plain mapping (not a `Watchlist`) look it up per text,
    # and building the set is cheaper than sorting the items; sorted here, once, for a
    # deterministic lookup.
    items = sorted(entries)
    lookup = {" ".join(name.split()).casefold(): ticker.strip().upper() for name, ticker in items}
    names = [name for name, _ in items if name.strip()]
    if not names:
        return None, lookup
    # Lookarounds instead of \b, so names ending in punctuation ("McDonald's", "Amazon.com") still work.
    pattern = re.compile(r"(?<!\w)(?:" + _names_pattern(names) + r")(?!\w)", re.IGNORECASE)
    return pattern, lookup


class Watchlist(Mapping[str, str]):
    """A watchlist (company name → ticker) frozen with its regex compiled once.

    `watchlist_tickers` accepts any mapping, but for a plain dict it must hash the whole
    watchlist to find the compiled regex in its cache, on every headline (10 µs per headline
    with the default list, on the scorer's model thread); the scorer builds one of these at
    start-up instead.
    """

    __slots__ = ("_entries", "lookup", "pattern")

    def __init__(self, entries: Mapping[str, str]) -> None:
        self._entries = dict(entries)
        self.pattern, self.lookup = _compile_watchlist(frozenset(self._entries.items()))

    def __getitem__(self, name: str) -> str:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def cashtags(text: str) -> list[str]:
    """Upper-case tickers written as cashtags, in order of appearance (may repeat)."""
    return [match.upper() for match in _CASHTAG.findall(text)]


def watchlist_tickers(text: str, watchlist: Mapping[str, str]) -> list[str]:
    """Tickers of watchlist company names found in `text` (case-insensitive, whole words)."""
    if isinstance(watchlist, Watchlist):
        pattern, lookup = watchlist.pattern, watchlist.lookup
    else:
        pattern, lookup = _compile_watchlist(frozenset(watchlist.items()))
    if pattern is None:
        return []
    return [lookup[" ".join(m.group(0).split()).casefold()] for m in pattern.finditer(text)]


def normalise_tickers(tickers: Iterable[str]) -> tuple[str, ...]:
    """Sorted, unique, upper-case, blank entries dropped: the one canonical form stored."""
    return tuple(sorted({t.strip().upper() for t in tickers if t.strip()}))


def extract_tickers(text: str, watchlist: Mapping[str, str] = DEFAULT_WATCHLIST) -> list[str]:
    """Sorted unique upper-case tickers from cashtags and watchlist names in `text`."""
    return list(normalise_tickers([*cashtags(text), *watchlist_tickers(text, watchlist)]))
