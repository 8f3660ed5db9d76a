"""Overview: market, topic and ticker sentiment indices, open alerts on them, the movers
(topics and tickers with far more bearish news than usual right now), a live panel."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import altair as alt
import pandas as pd
import streamlit as st

from bert_core import TOPIC_LABELS
from dashboards.context import cached_query, fresh_query
from dashboards.data import alerts as alert_data
from dashboards.data import indices
from dashboards.data.indices import TimeRange, choose_width, key_for
from dashboards.movers import Mover, rank_movers
from dashboards.ui import current_minute, page_context, time_range_picker, utcnow
from services.alerting import Scope

SEVERITY_COLORS = alt.Scale(domain=["warning", "high", "critical"], range=["#e6a700", "#e8590c", "#c92a2a"])


def index_chart(series: pd.DataFrame, alerts: pd.DataFrame, *, height: int = 140) -> alt.VConcatChart:
    """Volume bars, mean-score line, bearish-share line on one time axis; alerts as rules."""
    x = alt.X("bucket_start:T", title="UTC", scale=alt.Scale(type="utc"))
    base = alt.Chart(series).encode(x=x)
    volume = base.mark_bar(color="#4c6ef5").encode(
        y=alt.Y("total:Q", title="stories"), tooltip=["bucket_start:T", "total:Q", "bearish:Q", "bullish:Q"]
    )
    score = base.mark_line(color="#2b8a3e").encode(
        y=alt.Y("mean_score:Q", title="mean score", scale=alt.Scale(domain=[-1, 1])),
        tooltip=["bucket_start:T", alt.Tooltip("mean_score:Q", format="+.3f")],
    )
    share = base.mark_line(color="#c92a2a").encode(
        y=alt.Y("bearish_share:Q", title="bearish share", axis=alt.Axis(format="%")),
        tooltip=["bucket_start:T", alt.Tooltip("bearish_share:Q", format=".1%")],
    )
    layers = [volume, score, share]
    if not alerts.empty:
        rules = (
            alt.Chart(alerts)
            .mark_rule(strokeWidth=2, strokeDash=[4, 2])
            .encode(
                x=alt.X("opened_at:T", scale=alt.Scale(type="utc")),
                color=alt.Color("severity:N", scale=SEVERITY_COLORS, title="alert"),
                tooltip=["id:Q", "severity:N", "status:N", "opened_at:T"],
            )
        )
        layers = [alt.layer(layer, rules) for layer in layers]
    return alt.vconcat(*[layer.properties(height=height) for layer in layers])


ctx = page_context()
settings = ctx.settings
base = settings.alerts.alert_bucket_seconds

st.title("Sentiment overview")
left, middle, right = st.columns([1, 2, 2])
scope = left.selectbox("Index", ["market", "topic", "ticker"], key="ov_scope")
with right:
    period = time_range_picker(settings, key="ov")
key: str | None = None
if scope == "topic":
    key = middle.selectbox("Topic", TOPIC_LABELS, key="ov_topic")
elif scope == "ticker":
    busiest = cached_query(
        settings, indices.scope_summary, scope="ticker", period=period, base_width=base, limit=200
    )
    tickers = busiest["key"].tolist()
    if not tickers:
        st.info("No ticker news in this range.")
        st.stop()
    key = middle.selectbox("Ticker (busiest first)", tickers, key="ov_ticker")

width = choose_width(period.span, base_seconds=base)
series = cached_query(
    settings, indices.index_series, scope=scope, key=key, period=period, width=width, base_width=base
)
marks = cached_query(
    settings, alert_data.alerts_overlapping, scope=scope, key=key_for(cast(Scope, scope), key), period=period
)

total = int(series["total"].sum()) if not series.empty else 0
bearish = int(series["bearish"].sum()) if not series.empty else 0
mean_score = float((series["mean_score"] * series["total"]).sum() / total) if total else 0.0
open_alerts = int((marks["status"] == "open").sum()) if not marks.empty else 0
c1, c2, c3, c4 = st.columns(4)
c1.metric("Stories", f"{total:,}")
c2.metric("Bearish share", f"{bearish / total:.1%}" if total else "n/a")
c3.metric("Mean score", f"{mean_score:+.3f}")
c4.metric("Open alerts", open_alerts)

if series.empty:
    st.info("No scored news in this range.")
else:
    st.caption(f"{width // 60}-minute buckets" if width < 3600 else f"{width // 3600}-hour buckets")
    st.altair_chart(index_chart(series, marks), key="ov_chart")
if not marks.empty:
    st.subheader("Alerts on this index")
    st.dataframe(marks, hide_index=True, key="ov_alerts")
if st.button("Read the headlines behind this range", key="ov_drill"):
    st.session_state["drill"] = {"scope": scope, "key": key, "start": period.start, "end": period.end}
    st.switch_page("views/drilldown.py")

st.subheader("Topics in this range")
topics = cached_query(
    settings, indices.scope_summary, scope="topic", period=period, base_width=base, limit=20
)
st.dataframe(
    topics,
    hide_index=True,
    key="ov_topics",
    column_config={
        "bearish_share": st.column_config.NumberColumn("bearish share", format="percent"),
        "mean_score": st.column_config.NumberColumn("mean score", format="%+.3f"),
    },
)


def movers_frame(movers: list[Mover]) -> pd.DataFrame:
    """Plain values for st.dataframe (keys are shown as text, never as HTML)."""
    return pd.DataFrame(
        [
            {
                "scope": m.scope,
                "key": m.key,
                "bearish": m.bearish,
                "usually": round(m.usual_bearish, 1),
                "x usual": None if m.count_ratio == float("inf") else round(m.count_ratio, 1),
                "bearish share": m.share,
                "usual share": m.usual_share,
                "stories": m.stories,
                "surprise": round(m.score, 1),
            }
            for m in movers
        ],
        columns=[
            "scope",
            "key",
            "bearish",
            "usually",
            "x usual",
            "bearish share",
            "usual share",
            "stories",
            "surprise",
        ],
    )


MOVERS_WINDOW = timedelta(minutes=10)
MOVERS_BASELINE = timedelta(hours=24)

st.subheader("Movers: bearish news far above normal")
newest = cached_query(settings, indices.newest_bucket, base_width=base)
if newest is None:
    st.caption("No news yet.")
else:
    window = TimeRange.ending(newest + timedelta(seconds=base), MOVERS_WINDOW)
    baseline = TimeRange.ending(window.start, MOVERS_BASELINE)
    ranked: list[Mover] = []
    for mover_scope in ("topic", "ticker"):
        rows, market_now, market_before = cached_query(
            settings,
            indices.mover_counts,
            scope=mover_scope,
            window=window,
            baseline=baseline,
            base_width=base,
        )
        ranked += rank_movers(rows, market_total=market_now, market_base_total=market_before, limit=20)
    ranked.sort(key=lambda m: (-m.score, -m.bearish, m.scope, m.key))
    st.caption(
        f"The last {MOVERS_WINDOW.seconds // 60} minutes of news (to {window.end:%H:%M} UTC) against the "
        f"{MOVERS_BASELINE.days * 24} hours before: bearish stories now, how many the key usually gets at "
        "the market's current volume, its bearish share against its usual one; most surprising first "
        "(surprise = -log10 p, the alert detector's tests: 6 or more is alert territory)."
    )
    if ranked:
        st.dataframe(
            movers_frame(ranked[:20]),
            hide_index=True,
            key="ov_movers",
            column_config={
                "bearish share": st.column_config.NumberColumn("bearish share", format="percent"),
                "usual share": st.column_config.NumberColumn("usual share", format="percent"),
            },
        )
    else:
        st.caption("No bearish news in the last minutes.")


@st.fragment(run_every=timedelta(seconds=settings.dashboard.dashboard_refresh_seconds))
def live_panel() -> None:
    """The newest minutes, re-queried (uncached) on a timer without rerunning the page."""
    newest = fresh_query(settings, indices.newest_bucket, base_width=base, not_after=current_minute(base))
    end = (newest + timedelta(seconds=base)) if newest is not None else utcnow()
    live = TimeRange.ending(end, timedelta(minutes=settings.dashboard.dashboard_live_minutes))
    frame = fresh_query(
        settings, indices.index_series, scope=scope, key=key, period=live, width=base, base_width=base
    )
    st.subheader(f"Live: last {settings.dashboard.dashboard_live_minutes} minutes")
    if frame.empty:
        st.caption("No news in the newest minutes.")
    else:
        n = int(frame["total"].sum())
        bear = int(frame["bearish"].sum())
        a, b = st.columns(2)
        a.metric("Stories", f"{n:,}")
        b.metric("Bearish share", f"{bear / n:.1%}" if n else "n/a")
        st.altair_chart(index_chart(frame, pd.DataFrame(), height=90), key="ov_live_chart")
    st.caption(f"refreshed {utcnow():%H:%M:%S} UTC, every {settings.dashboard.dashboard_refresh_seconds:g} s")


live_panel()
