"""Alerts: the feed, each alert's evidence and driving headlines, analyst actions."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboards import actions
from dashboards.access import PermissionDenied
from dashboards.context import cached_query, invalidate
from dashboards.data import alerts as alert_data
from dashboards.data import news
from dashboards.ui import page_context, stories_table, utcnow
from services.alerting import what_happened

ctx = page_context()
settings, user = ctx.settings, ctx.user

st.title("Alerts")
top = st.columns([2, 1])
show = top[0].radio("Show", ["needs attention", "open", "all"], horizontal=True, key="al_show")
scope = top[1].selectbox("Scope", ["all", "market", "topic", "ticker"], key="al_scope")
feed = cached_query(settings, alert_data.alert_feed, show=show, scope=None if scope == "all" else scope)
now = utcnow()

if not feed:
    st.info("No alerts to show.")
    st.stop()

st.dataframe(
    pd.DataFrame(
        [
            {
                "id": a.id,
                "severity": a.severity,
                "scope": a.scope,
                "key": a.key,
                "status": a.shown_status,
                "opened (UTC)": a.opened_at,
                "detections": a.detections,
                "acknowledged by": a.acknowledged_by,
                "closed by": a.closed_by,
                "muted until": a.muted_until if a.muted(now) else None,
            }
            for a in feed
        ]
    ),
    hide_index=True,
    key="al_feed",
)

by_id = {a.id: a for a in feed}
chosen = st.selectbox("Alert", list(by_id), format_func=lambda i: by_id[i].label, key="al_pick")
alert = by_id[chosen]

st.subheader("Evidence")
st.text(what_happened(alert.scope, alert.key, alert.evidence))  # plain text, never HTML
st.dataframe(alert_data.evidence_table(alert.evidence), hide_index=True, key="al_evidence")
state = [f"status {alert.shown_status}"]
if alert.acknowledged_by:
    state.append(f"acknowledged by {alert.acknowledged_by} at {alert.acknowledged_at:%Y-%m-%d %H:%M} UTC")
if alert.closed_by:
    state.append(f"closed by {alert.closed_by} at {alert.closed_at:%Y-%m-%d %H:%M} UTC")
if alert.muted(now):
    state.append(f"muted by {alert.muted_by} until {alert.muted_until:%Y-%m-%d %H:%M} UTC")
st.text("; ".join(state))

st.subheader("Driving headlines")
drivers = cached_query(settings, news.stories_by_id, event_ids=tuple(alert.event_ids))
if drivers.empty:
    st.caption("This alert carries no stored headlines.")
else:
    stories_table(drivers, key="al_drivers")
if st.button("Open the alert window in the drill-down", key="al_drill"):
    end = alert.evidence.get("window_end")
    st.session_state["drill"] = {
        "scope": alert.scope,
        "key": None if alert.scope == "market" else alert.key,
        "start": alert.window_start,
        "end": pd.Timestamp(end).to_pydatetime() if end else alert.last_detected_at + timedelta(minutes=1),
    }
    st.switch_page("views/drilldown.py")

st.subheader("Actions")
if not user.can("alert.act"):
    st.caption("Your role is read-only here.")
    st.stop()


def run(action: str) -> None:
    try:
        if action == "ack":
            actions.acknowledge_alert(ctx.sessions, user, alert_id=alert.id, now=utcnow())
        elif action == "close":
            actions.close_alert(ctx.sessions, user, alert_id=alert.id, now=utcnow())
        elif action == "reopen":
            actions.reopen_alert(ctx.sessions, user, alert_id=alert.id)
        elif action == "mute":
            hours = float(st.session_state.get("al_mute_hours", 4))
            actions.mute_alert(ctx.sessions, user, alert_id=alert.id, hours=hours, now=utcnow())
        elif action == "unmute":
            actions.unmute_alert(ctx.sessions, user, alert_id=alert.id)
    except (PermissionDenied, ValueError, LookupError) as exc:
        st.error(str(exc))
        return
    invalidate()
    st.rerun()


cols = st.columns(5)
if cols[0].button("Acknowledge", key="al_ack", disabled=alert.acknowledged_at is not None):
    run("ack")
if alert.closed_at is None:
    if cols[1].button("Close", key="al_close"):
        run("close")
elif cols[1].button("Reopen", key="al_reopen"):
    run("reopen")
cols[2].number_input("Mute hours", min_value=1, max_value=24 * 30, value=4, step=1, key="al_mute_hours")
if cols[3].button("Mute", key="al_mute"):
    run("mute")
if alert.muted(now) and cols[4].button("Unmute", key="al_unmute"):
    run("unmute")
st.caption("A muted alert's notifications are not delivered to subscriptions until the mute ends.")
