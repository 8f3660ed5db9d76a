"""Drill-down: the headlines behind one index over one range, most influential first."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from bert_core import TOPIC_LABELS
from dashboards.context import cached_query
from dashboards.data import news
from dashboards.data.indices import TimeRange
from dashboards.ui import page_context, stories_table, time_range_picker

ctx = page_context()
settings = ctx.settings

st.title("Drill-down")
target = st.session_state.get("drill")
if isinstance(target, dict):
    # Arriving from the overview or an alert: preselect its index. The widgets then own the
    # values, so the analyst can change them from there.
    st.session_state["dd_scope"] = target.get("scope") or "market"
    if target.get("scope") == "topic" and target.get("key") in TOPIC_LABELS:
        st.session_state["dd_topic"] = target["key"]
    if target.get("scope") == "ticker" and target.get("key"):
        st.session_state["dd_ticker"] = str(target["key"])
    st.session_state["dd_fixed"] = (target["start"], target["end"])
    del st.session_state["drill"]

left, middle, right = st.columns([1, 2, 2])
scope = left.selectbox("Index", ["market", "topic", "ticker"], key="dd_scope")
key: str | None = None
if scope == "topic":
    key = middle.selectbox("Topic", TOPIC_LABELS, key="dd_topic")
elif scope == "ticker":
    key = middle.text_input("Ticker", key="dd_ticker").strip().upper().removeprefix("$") or None

fixed = st.session_state.get("dd_fixed")
with right:
    if isinstance(fixed, tuple) and all(isinstance(x, datetime) for x in fixed):
        period = TimeRange(fixed[0].astimezone(UTC), fixed[1].astimezone(UTC))
        st.text(f"range {period.start:%Y-%m-%d %H:%M} to {period.end:%Y-%m-%d %H:%M} UTC (from the link)")
        if st.button("Choose another range", key="dd_unfix"):
            del st.session_state["dd_fixed"]
            st.rerun()
    else:
        period = time_range_picker(settings, key="dd", default="last hour")

sentiments = st.multiselect("Sentiment", list(news.SENTIMENTS), key="dd_sentiments")
limit = st.select_slider("Headlines", options=[25, 50, 100, 200, 500], value=100, key="dd_limit")

if scope == "ticker" and key is None:
    st.info("Enter a ticker.")
    st.stop()

frame = cached_query(
    settings,
    news.drilldown,
    scope=scope,
    key=key,
    period=period,
    sentiments=tuple(sentiments),
    limit=limit,
)
st.caption(
    "Sorted by influence = |sentiment score| x confidence, where the sentiment score is "
    "P(bullish) - P(bearish) and confidence is the probability of the predicted class: the "
    "stories that moved the index most, and that the model was surest of, come first."
)
if frame.empty:
    st.info("No headlines for this index in this range.")
else:
    st.text(f"{len(frame)} headlines")
    stories_table(frame, key="dd_table")
