from __future__ import annotations

from pathlib import Path

import pytest

from services.schemas import WatchlistError, extract_tickers, load_watchlist, parse_watchlist


def test_csv_with_header_comments_and_blank_lines() -> None:
    text = "name,ticker\n# banks\nDeutsche Bank, dbk\n\nSiemens Energy,ENR\n"
    assert parse_watchlist(text) == {"Deutsche Bank": "DBK", "Siemens Energy": "ENR"}


def test_json_object() -> None:
    assert parse_watchlist('{"Nestle": "NESN", "Roche  Holding": "rog"}') == {
        "Nestle": "NESN",
        "Roche Holding": "ROG",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Acme,AC,extra\n", "expected 2 columns"),
        ("Acme,not a ticker\n", "is not a ticker"),
        (",ACME\n", "empty company name"),
        ('{"Acme": 5}', "must be text"),
        ("[1, 2]", "expected a JSON object"),
        ("{oops", "invalid JSON"),
        ("# only a comment\n", "no entries"),
    ],
)
def test_bad_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(WatchlistError, match=message):
        parse_watchlist(text, source="w.csv")


def test_loaded_watchlist_drives_extraction(tmp_path: Path) -> None:
    path = tmp_path / "watch.csv"
    path.write_text("Deutsche Bank,DBK\n", encoding="utf-8")
    watch = load_watchlist(path)
    assert extract_tickers("Deutsche Bank shares fall; Apple flat", watch) == ["DBK"]


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WatchlistError, match="cannot read watchlist"):
        load_watchlist(tmp_path / "nope.csv")


def test_a_frozen_watchlist_extracts_as_its_dict_does() -> None:
    from services.schemas import DEFAULT_WATCHLIST, Watchlist

    frozen = Watchlist(DEFAULT_WATCHLIST)
    assert dict(frozen) == DEFAULT_WATCHLIST and len(frozen) == len(DEFAULT_WATCHLIST)
    for text in ("Apple and Goldman  Sachs beat; $TSLA slips", "nothing to see", "JPMorgan Chase, Nvidia"):
        assert extract_tickers(text, frozen) == extract_tickers(text, DEFAULT_WATCHLIST)
    assert extract_tickers("Apple rises", Watchlist({})) == []
