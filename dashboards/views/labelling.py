"""Labelling queue: one story at a time, disagreements first, then what the model is least sure of.

Keyboard: 1 bearish, 2 neutral, 3 bullish (sentiment), Ctrl+Enter saves a topic, S skips.

The buttons carry the item they were drawn with (`on_click` arguments): the queue is
recomputed on every run, and after the cache expires or another analyst labels, the run
that a click starts may put a different story first. Saving what that run computes would
label a story the analyst never saw.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from bert_core import TOPIC_LABELS
from dashboards import actions, auth
from dashboards.access import PermissionDenied
from dashboards.actions import ActionFailed, LabelChoice
from dashboards.context import cached_query, invalidate
from dashboards.data import labelling
from dashboards.data.indices import TimeRange
from dashboards.data.labelling import QueueItem
from dashboards.ui import data_end, page_context, utcnow

SENTIMENT_KEYS = {"bearish": "1", "neutral": "2", "bullish": "3"}

ctx = page_context("label")
settings, user = ctx.settings, ctx.user

st.title("Labelling queue")
task = st.radio("Task", ["sentiment", "topic"], horizontal=True, key="lq_task")
# Items labelled or skipped in this session, per task: the queue moves on without waiting
# for the cache, and a skipped item does not come straight back.
done: dict[str, set[str]] = st.session_state.setdefault("lq_done", {})
done_here = done.setdefault(task, set())

flash = st.session_state.pop("lq_flash", None)
if flash:
    st.success(flash)
failure = st.session_state.pop("lq_error", None)
if failure:
    st.error(failure)

end = data_end(settings)
window = TimeRange.ending(end, timedelta(days=settings.dashboard.dashboard_label_window_days))
disputed = cached_query(settings, labelling.disagreements, task=task)
uncertain = cached_query(settings, labelling.uncertain_stories, task=task, period=window)
queue = labelling.build_queue(disputed, uncertain, done=done_here)

if not queue:
    st.success("Nothing to label: no disagreements and no unlabelled stories in the recent window.")
    st.stop()

item: QueueItem = queue[0]
st.caption(
    f"{len(queue)} in the queue; "
    + ("analysts disagreed on this one" if item.kind == "disagreement" else "the model is unsure of this one")
)
st.text(item.text)  # untrusted: plain text only
if item.probabilities:
    probs = pd.DataFrame(item.probabilities, columns=["class", "probability"])
    st.dataframe(probs, hide_index=True, key="lq_probs")
    measure = "margin between the top two classes" if task == "sentiment" else "top probability"
    st.caption(f"model: {item.model_label}; {measure} {item.sureness:.3f}")
if item.labels:
    st.dataframe(pd.DataFrame(item.labels, columns=["labeller", "label"]), hide_index=True, key="lq_labels")


def save(shown: QueueItem, label: str | None = None, *, topic_key: str | None = None) -> None:
    """Label `shown`, the item on screen when the button was drawn (runs before the rerun)."""
    if topic_key is not None:
        label = st.session_state.get(topic_key)
    if not label:
        return
    # Resolved again: the callback runs before the page, and a role removed since the
    # button was drawn must not label.
    labeller = auth.current_user(settings)
    if labeller is None:
        st.session_state["lq_error"] = "You are no longer logged in; nothing was saved."
        return
    try:
        actions.record_labels(
            ctx.sessions, labeller, choices=[LabelChoice(shown, label)], settings=settings, now=utcnow()
        )
    except (PermissionDenied, ActionFailed, ValueError) as exc:
        st.session_state["lq_error"] = str(exc)
        return
    st.session_state.setdefault("lq_done", {}).setdefault(shown.task, set()).add(shown.identity)
    invalidate()
    st.session_state["lq_flash"] = f"saved {shown.task} label: {label}"


def skip(shown: QueueItem) -> None:
    st.session_state.setdefault("lq_done", {}).setdefault(shown.task, set()).add(shown.identity)


if task == "sentiment":
    cols = st.columns(4)
    for col, (label, shortcut) in zip(cols, SENTIMENT_KEYS.items(), strict=False):
        col.button(
            f"{label} ({shortcut})",
            key=f"lq_{label}",
            shortcut=shortcut,
            width="stretch",
            on_click=save,
            args=(item, label),
        )
    cols[3].button("Skip (S)", key="lq_skip", shortcut="S", width="stretch", on_click=skip, args=(item,))
else:
    default = TOPIC_LABELS.index(item.model_label) if item.model_label in TOPIC_LABELS else 0
    topic_key = f"lq_topic_{item.identity}"
    st.selectbox("Topic", TOPIC_LABELS, index=default, key=topic_key)
    save_col, skip_col = st.columns(2)
    save_col.button(
        "Save topic (Ctrl+Enter)",
        key="lq_save_topic",
        shortcut="Ctrl+Enter",
        type="primary",
        on_click=save,
        args=(item,),
        kwargs={"topic_key": topic_key},
    )
    skip_col.button("Skip (S)", key="lq_skip", shortcut="S", on_click=skip, args=(item,))
