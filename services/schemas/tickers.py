"""Ticker extraction: cashtags ($AAPL, $BRK.B) and watchlist company names in free text.

Pure functions, no I/O. Messages that arrive without `tickers` get them from here, so
per-ticker alerts and dashboards also cover feeds that only carry a headline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

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


def _name_pattern(name: str) -> str:
    # Any run of whitespace in the text matches a space in the name ("Goldman  Sachs").
    return r"\s+".join(re.escape(part) for part in name.split())


@lru_cache(maxsize=8)
def _compile_watchlist(entries: frozenset[tuple[str, str]]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    # A frozenset key costs a few microseconds per headline where sorting the items cost 12 (the
    # worker calls this for every headline); sorted here, once, so the lookup is deterministic.
    items = sorted(entries)
    lookup = {" ".join(name.split()).casefold(): ticker.strip().upper() for name, ticker in items}
    names = sorted((name for name, _ in items if name.strip()), key=len, reverse=True)  # longest first
    if not names:
        return None, lookup
    # Lookarounds instead of \b, so names ending in punctuation ("McDonald's", "Amazon.com") still work.
    pattern = re.compile(
        r"(?<!\w)(?:" + "|".join(_name_pattern(n) for n in names) + r")(?!\w)", re.IGNORECASE
    )
    return pattern, lookup


def cashtags(text: str) -> list[str]:
    """Upper-case tickers written as cashtags, in order of appearance (may repeat)."""
    return [match.upper() for match in _CASHTAG.findall(text)]


def watchlist_tickers(text: str, watchlist: Mapping[str, str]) -> list[str]:
    """Tickers of watchlist company names found in `text` (case-insensitive, whole words)."""
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
