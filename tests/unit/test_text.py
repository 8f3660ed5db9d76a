"""bert_core.normalize_text: the one normaliser shared by training and serving."""

from __future__ import annotations

import pytest

from bert_core import normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AT&amp;T shares up", "AT&T shares up"),
        # Feeds double-escape: &amp;amp; must still end up as a plain ampersand.
        ("AT&amp;amp;T shares up", "AT&T shares up"),
        ("S&amp;P 500 &gt; 5000 &quot;record&quot;", 'S&P 500 > 5000 "record"'),
        ("&amp;lt;b&amp;gt;", "<b>"),
    ],
)
def test_html_entities_are_unescaped(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Stocks rally https://t.co/AbC123 on Fed", "Stocks rally on Fed"),
        ("read http://example.com/a?b=1&c=2 now", "read now"),
        ("see www.reuters.com/markets today", "see today"),
        ("HTTPS://EXAMPLE.COM/X shouting link", "shouting link"),
        ("https://t.co/only", ""),
    ],
)
def test_urls_are_removed(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_whitespace_is_collapsed_and_stripped() -> None:
    assert normalize_text("  oil \t\t up\n\nagain \r\n ") == "oil up again"
    # A non-breaking space (NFKC -> space) and a zero-width space (dropped) are not words.
    assert normalize_text("gold\u00a0\u00a0rises") == "gold rises"
    assert normalize_text("\ufeffgold\u200b rises\u0007") == "gold rises"


def test_cashtags_and_punctuation_are_kept() -> None:
    text = "$AAPL beats, $TSLA misses: -5% (after hours)!"
    assert normalize_text(text) == text
    assert normalize_text("$AAPL https://t.co/x  $MSFT") == "$AAPL $MSFT"


def test_normalising_twice_changes_nothing() -> None:
    samples = ["AT&amp;amp;T  https://t.co/x  up", " $AAPL\u00a0beats ", "plain text"]
    for sample in samples:
        once = normalize_text(sample)
        assert normalize_text(once) == once
