"""Watchlist files: which company names in a headline map to which ticker.

A desk watches its own universe, so the built-in list (`DEFAULT_WATCHLIST`) can be replaced
by a file named in FINSENT_WATCHLIST: CSV with `name,ticker` columns (a header row is
optional) or a JSON object {"name": "TICKER"}. `parse_watchlist` is pure; `load_watchlist`
reads the file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

_TICKER = re.compile(r"^[A-Z][A-Z0-9]{0,5}(?:\.[A-Z]{1,2})?$")


class WatchlistError(ValueError):
    """The watchlist file is unusable; the message names the file and the line."""


def _entry(name: object, ticker: object, where: str) -> tuple[str, str]:
    if not isinstance(name, str) or not isinstance(ticker, str):
        raise WatchlistError(f"{where}: name and ticker must be text")
    clean_name = " ".join(name.split())
    clean_ticker = ticker.strip().upper()
    if not clean_name:
        raise WatchlistError(f"{where}: empty company name")
    if not _TICKER.match(clean_ticker):
        raise WatchlistError(f"{where}: {ticker!r} is not a ticker (letters/digits, e.g. AAPL or BRK.B)")
    return clean_name, clean_ticker


def parse_watchlist(text: str, *, source: str = "watchlist") -> dict[str, str]:
    """{company name: ticker} from CSV or JSON text (JSON if it starts with `{` or `[`)."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise WatchlistError(f"{source}: invalid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise WatchlistError(f"{source}: expected a JSON object of name -> ticker")
        entries = [_entry(name, ticker, f"{source}: entry {name!r}") for name, ticker in data.items()]
    else:
        entries = []
        for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if number == 1 and [c.lower() for c in cells[:2]] == ["name", "ticker"]:
                continue
            if len(cells) != 2:
                raise WatchlistError(f"{source}:{number}: expected 2 columns (name,ticker), got {len(cells)}")
            entries.append(_entry(cells[0], cells[1], f"{source}:{number}"))
    if not entries:
        raise WatchlistError(f"{source}: no entries")
    return dict(entries)


def load_watchlist(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise WatchlistError(f"cannot read watchlist {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise WatchlistError(f"watchlist {path} is not UTF-8 text") from None
    return parse_watchlist(text, source=str(path))
