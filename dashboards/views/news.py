"""News browser: filters, full-text search, keyset pages, CSV export.

The range's end is frozen while the user pages (`frozen_data_end`): on a live stream the
newest stored minute moves every minute, and a moving range is a new filter, which would
send the reader back to page 1. It moves on when a filter changes or on Refresh.
"""

from __future__ import annotations

import streamlit as st

from bert_core import TOPIC_LABELS
from dashboards.context import cached_query, fresh_query
from dashboards.data import news
from dashboards.data.news import Cursor, NewsFilter
from dashboards.ui import frozen_data_end, page_context, stories_table, time_range_picker

FIRST = "first prediction of each story"
PAGE_SIZES = [25, 50, 100, 200, 500]
# The filter widgets: a change in any of them takes the newest end again.
FILTER_KEYS = (
    "nb_range",
    "nb_dates",
    "nb_topics",
    "nb_sentiments",
    "nb_ticker",
    "nb_source",
    "nb_conf",
    "nb_version",
    "nb_search",
)

ctx = page_context()
settings = ctx.settings

st.title("News browser")
anchor = frozen_data_end(settings, key="nb", watch=FILTER_KEYS)
row1 = st.columns([2, 3, 2])
with row1[0]:
    period = time_range_picker(settings, key="nb", end=anchor.end)
topics = row1[1].multiselect("Topics", TOPIC_LABELS, key="nb_topics")
sentiments = row1[2].multiselect("Sentiment", list(news.SENTIMENTS), key="nb_sentiments")
row2 = st.columns([2, 2, 2, 2])
ticker = row2[0].text_input("Ticker", key="nb_ticker").strip().upper().removeprefix("$")
source = row2[1].text_input("Source (exact)", key="nb_source").strip()
min_conf = row2[2].slider("Min. confidence", 0.0, 1.0, 0.0, 0.05, key="nb_conf")
versions = cached_query(settings, news.model_versions_seen, period=period)
version = row2[3].selectbox("Model version", [FIRST, *versions], key="nb_version")
search = st.text_input(
    "Search headlines",
    key="nb_search",
    max_chars=news.MAX_SEARCH_CHARS,
    help='Words must all occur; "quoted phrase", -excluded word (and OR on PostgreSQL).',
).strip()
default_size = settings.dashboard.dashboard_page_size  # FINSENT_DASHBOARD_PAGE_SIZE joins the choices
sizes = sorted({*PAGE_SIZES, default_size})
page_size = st.selectbox("Rows per page", sizes, index=sizes.index(default_size), key="nb_size")
anchor.keep()
anchor.refresh_button("Refresh (take in newer stories)")

flt = NewsFilter(
    period=period,
    topics=tuple(topics),
    sentiments=tuple(sentiments),
    ticker=ticker or None,
    source=source or None,
    min_confidence=float(min_conf),
    text=search or None,
    model_version=None if version == FIRST else version,
)

# Cursor stack: one entry per page visited; a changed filter starts again at page 1.
if st.session_state.get("nb_filter") != flt:
    st.session_state["nb_filter"] = flt
    st.session_state["nb_cursors"] = []
cursors: list[Cursor] = st.session_state["nb_cursors"]

count, more = cached_query(settings, news.count_news, filter=flt)
page = cached_query(
    settings, news.news_page, filter=flt, page_size=page_size, after=cursors[-1] if cursors else None
)

st.text(f"{count:,}{'+' if more else ''} stories match; page {len(cursors) + 1}")
stories_table(page.rows, key="nb_table")

# A story re-published by several outlets is one row with "+N copies"; its copies on demand.
syndicated = page.rows[page.rows["copies"] > 0] if len(page.rows) else page.rows
if len(syndicated):
    with st.expander(f"Copies of a story ({len(syndicated)} stories on this page were re-published)"):
        labels = {
            f"{row.headline[:100]} (+{int(row.copies)} copies)": row.story_id
            for row in syndicated.itertuples(index=False)
        }
        chosen = st.selectbox("Story", list(labels), key="nb_story")
        if chosen is not None:
            items = cached_query(settings, news.story_items, story_id=labels[chosen])
            stories_table(
                items, key="nb_story_items", columns=["published_at", "headline", "source", "novelty"]
            )

nav = st.columns([1, 1, 4])
if nav[0].button("Newer", key="nb_newer", disabled=not cursors):
    cursors.pop()
    st.rerun()
if nav[1].button("Older", key="nb_older", disabled=page.next_cursor is None):
    assert page.next_cursor is not None
    cursors.append(page.next_cursor)
    st.rerun()


def _csv() -> bytes:
    return fresh_query(
        settings, news.export_csv, filter=flt, max_rows=settings.dashboard.dashboard_export_max_rows
    )


nav[2].download_button(
    f"Export CSV (newest {min(count, settings.dashboard.dashboard_export_max_rows):,} rows)",
    data=_csv,
    file_name=f"finsent-news-{period.start:%Y%m%dT%H%M}-{period.end:%Y%m%dT%H%M}.csv",
    mime="text/csv",
    key="nb_export",
    disabled=count == 0,
)
