"""Widgets shared by the pages.

Untrusted text (headlines, sources, URLs, model notes) is only ever shown through
`st.text`, `st.code`, `st.json` or dataframe cells, which render it as text. Never through
`st.markdown`, `st.write` of a string, widget labels or captions: those interpret
Markdown (and links, and with unsafe_allow_html HTML), so a headline could restyle the
page or carry a link that looks like ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

import pandas as pd
import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from dashboards import auth
from dashboards.access import Action, User
from dashboards.context import cached_query, load_settings, sessions
from dashboards.data import indices
from dashboards.data.indices import TimeRange
from services.settings import Settings

PRESETS: Final[dict[str, timedelta]] = {
    "last hour": timedelta(hours=1),
    "last 6 hours": timedelta(hours=6),
    "last 24 hours": timedelta(hours=24),
    "last 7 days": timedelta(days=7),
    "last 30 days": timedelta(days=30),
    "last 365 days": timedelta(days=365),
}
CUSTOM: Final = "custom dates"


@dataclass(frozen=True, slots=True)
class PageContext:
    settings: Settings
    user: User
    sessions: sessionmaker[Session]


def page_context(action: Action = "view") -> PageContext:
    """Settings and the logged-in user; a page that is run without one stops here."""
    settings = load_settings()
    user = auth.current_user(settings)
    if user is None:
        st.warning("Log in first.")
        st.stop()
    if not user.can(action):
        st.error(f"Your role ({user.role}) cannot open this page.")
        st.stop()
    return PageContext(settings, user, sessions(settings))


def utcnow() -> datetime:
    return datetime.now(UTC)


def current_minute(base_seconds: int) -> datetime:
    """The start of the bucket now falls in: the newest a data range may be anchored at (a
    whole bucket, so the cached query's arguments change once a bucket, not every call)."""
    epoch = int(utcnow().timestamp())
    return datetime.fromtimestamp(epoch - epoch % base_seconds, UTC)


def data_end(settings: Settings) -> datetime:
    """The end of the newest stored minute: "now" for a live stream, and for a replay of old
    news the end of what was replayed (so the default range shows data, not an empty chart)."""
    base = settings.alerts.alert_bucket_seconds
    newest = cached_query(settings, indices.newest_bucket, base_width=base, not_after=current_minute(base))
    if newest is None:
        return utcnow()
    return newest + timedelta(seconds=base)


@dataclass(frozen=True, slots=True)
class FrozenEnd:
    """`data_end`, held still for one page of one session (see `frozen_data_end`)."""

    end: datetime
    state_key: str
    watch: tuple[str, ...]

    def keep(self) -> None:
        """Remember this end with the watched widgets' values; call after drawing them, so
        the next run compares against what the user saw (not the defaults of a first run)."""
        st.session_state[self.state_key] = (_widget_values(self.watch), self.end)

    def refresh_button(self, label: str = "Refresh") -> None:
        """A button that lets the next run take the newest end (its callback runs first)."""
        st.button(
            label, key=f"{self.state_key}_refresh", on_click=st.session_state.pop, args=(self.state_key, None)
        )


def frozen_data_end(settings: Settings, *, key: str, watch: Sequence[str]) -> FrozenEnd:
    """`data_end`, unchanged for as long as the widgets named in `watch` keep their values.

    On a live stream `data_end` moves every minute, and with it every preset range; a page
    whose identity includes the range (the news browser's keyset cursors) would start over
    at page 1 each time. Frozen, the range moves only when the user changes what they look
    at or asks for a refresh."""
    state_key = f"{key}_anchor"
    watched = tuple(watch)
    stored = st.session_state.get(state_key)
    if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == _widget_values(watched):
        return FrozenEnd(stored[1], state_key, watched)
    return FrozenEnd(data_end(settings), state_key, watched)


def _widget_values(keys: tuple[str, ...]) -> tuple[object, ...]:
    values = (st.session_state.get(k) for k in keys)
    return tuple(tuple(v) if isinstance(v, list | tuple) else v for v in values)


def time_range_picker(
    settings: Settings, *, key: str, default: str = "last 24 hours", end: datetime | None = None
) -> TimeRange:
    anchor = end or data_end(settings)
    options = [*PRESETS, CUSTOM]
    choice = st.selectbox("Time range", options, index=options.index(default), key=f"{key}_range")
    if choice != CUSTOM:
        period = TimeRange.ending(anchor, PRESETS[choice])
        st.caption(f"{_fmt(period.start)} to {_fmt(period.end)} UTC (ends at the newest stored story)")
        return period
    last_day = anchor.date()
    picked = st.date_input(
        "Dates (UTC)", value=(last_day - timedelta(days=1), last_day), key=f"{key}_dates", format="YYYY-MM-DD"
    )
    first, last = _date_pair(picked, last_day)
    start = datetime.combine(first, time(0), tzinfo=UTC)
    end_ = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
    return TimeRange(start, end_)


def _date_pair(picked: object, fallback: date) -> tuple[date, date]:
    if isinstance(picked, tuple | list) and len(picked) == 2:
        first, last = picked
        return (first, last) if first <= last else (last, first)
    if isinstance(picked, tuple | list) and len(picked) == 1:
        return picked[0], picked[0]
    if isinstance(picked, date):
        return picked, picked
    return fallback, fallback


def _fmt(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


STORY_COLUMNS: Final = [
    "published_at",
    "headline",
    "copies",
    "sentiment",
    "p_bearish",
    "p_neutral",
    "p_bullish",
    "sentiment_score",
    "confidence",
    "influence",
    "topic",
    "topic_score",
    "tickers",
    "source",
    "url",
    "model_version",
]


def stories_table(frame: pd.DataFrame, *, key: str, columns: list[str] | None = None) -> None:
    """Headlines with probabilities, as dataframe cells (text, never Markdown or HTML)."""
    prob = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(
        frame,
        hide_index=True,
        key=key,
        column_order=columns or STORY_COLUMNS,
        column_config={
            "published_at": st.column_config.DatetimeColumn("published (UTC)", format="YYYY-MM-DD HH:mm"),
            "headline": st.column_config.TextColumn("headline", width="large"),
            "copies": st.column_config.NumberColumn("copies", format="+%d copies"),
            "novelty": prob,
            "p_bearish": prob,
            "p_neutral": prob,
            "p_bullish": prob,
            "sentiment_score": st.column_config.NumberColumn("score", format="%+.3f"),
            "confidence": prob,
            "influence": prob,
            "topic_score": prob,
            "url": st.column_config.LinkColumn("link", display_text="open"),
        },
    )
