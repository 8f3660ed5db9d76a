"""Untrusted headline text is shown as text: never handed to Markdown or HTML elements."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dashboard_seed as seed
from dashboard_support import *  # noqa: F403 (the fixtures)
from dashboard_support import errors, open_page, walk

from services.learning.label_store import record_labels
from services.learning.labels import NewLabel
from services.storage import make_engine, session_factory

PAYLOADS = ("<script", "onerror", "<img")
# Elements that show their text verbatim; everything else (markdown, captions, titles, alerts,
# metrics, widget labels, expanders, toasts, html) interprets Markdown or HTML.
TEXT_ELEMENTS = {"dataframe", "text", "code", "json"}


def assert_payload_only_in_text_elements(at) -> int:
    """Fail if a payload reaches an interpreting element; return how many text elements hold one."""
    literal = 0
    for node in walk(at._tree):
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        kind = getattr(node, "type", "")
        if kind in TEXT_ELEMENTS:
            if kind == "dataframe":
                frame = node.value
                literal += sum(
                    1 for col in frame.columns for v in frame[col] if isinstance(v, str) and "<script>" in v
                )
            elif any(p in str(getattr(node, "value", "")) for p in PAYLOADS):
                literal += 1
            continue
        shown = str(proto)
        assert not any(p in shown for p in PAYLOADS), f"payload reached a {kind} element: {shown[:300]}"
    return literal


def test_headlines_with_html_render_as_literal_text(make_app) -> None:
    at = open_page(make_app("adam"), "news")
    headlines = list(at.dataframe[0].value["headline"])
    assert seed.SCRIPT_HEADLINE in headlines and seed.IMG_HEADLINE in headlines  # verbatim, unescaped
    assert assert_payload_only_in_text_elements(at) >= 1

    at = open_page(make_app("adam"), "drilldown")
    assert at.dataframe[0].value["headline"].iloc[0] == seed.SCRIPT_HEADLINE
    assert_payload_only_in_text_elements(at)

    at = open_page(make_app("adam"), "alerts")
    drivers = at.dataframe[2].value
    assert {seed.SCRIPT_HEADLINE, seed.IMG_HEADLINE} <= set(drivers["headline"])
    assert_payload_only_in_text_elements(at)
    # links: javascript: URLs from a feed are dropped, http(s) ones kept
    assert all(u.startswith("https://") for u in drivers["url"] if isinstance(u, str))
    assert drivers["url"].notna().any()


def test_labelling_queue_shows_the_headline_as_text(make_app, db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with session_factory(engine).begin() as session:
            record_labels(
                session,
                [
                    NewLabel(
                        "sentiment", "bearish", "bob", "test", text=seed.IMG_HEADLINE, event_id="ev-357"
                    ),
                    NewLabel(
                        "sentiment", "neutral", "carl", "test", text=seed.IMG_HEADLINE, event_id="ev-357"
                    ),
                ],
                now=datetime(2030, 1, 1, tzinfo=UTC),
                recent_share=0.0,
            )
    finally:
        engine.dispose()
    at = open_page(make_app("anna"), "labelling")
    assert not errors(at)
    shown = at.text[0].value
    assert "<img src=x onerror=alert(1)>" in shown  # the literal (normalised) text of the story
    assert_payload_only_in_text_elements(at)


def test_no_page_opts_into_raw_html() -> None:
    root = Path(__file__).resolve().parents[2] / "dashboards"
    for path in root.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "unsafe_allow_html=" not in source, path
        assert "st.html(" not in source and "components.html(" not in source, path
