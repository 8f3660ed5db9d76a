"""Subscriptions: list, create, edit, pause/resume, delete, send a test notification.

A test notification's outcome holds text from the receiver (an HTTP error body), so it is
shown with `st.text`, never inside a Markdown element.
"""

from __future__ import annotations

import logging
import zlib

import streamlit as st

from dashboards import actions
from dashboards.access import PermissionDenied
from dashboards.context import cached_query, invalidate
from dashboards.data.subscriptions import SubscriptionForm, subscriptions_frame, to_form
from dashboards.ui import page_context, utcnow
from services.delivery import repository as delivery_repo
from services.delivery.model import CHANNELS, SCOPES, SEVERITIES
from services.delivery.repository import SubscriptionExists
from services.delivery.subscriptions import SubscriptionError

log = logging.getLogger("dashboards.pages.subscriptions")
ctx = page_context()
settings, user = ctx.settings, ctx.user

st.title("Subscriptions")
subs = cached_query(settings, delivery_repo.list_subscriptions)
if subs:
    st.dataframe(subscriptions_frame(subs), hide_index=True, key="sub_table")
else:
    st.info("No subscriptions yet.")

flash = st.session_state.pop("sub_flash", None)
if flash:
    st.success(flash)

if not user.can("subscription.edit"):
    st.caption("Your role is read-only here.")
    st.stop()


def form_fields(prefix: str, initial: SubscriptionForm) -> SubscriptionForm:
    """The form's widgets; `prefix` keeps create and edit (per subscription) apart."""
    name = st.text_input("Name", value=initial.name, key=f"{prefix}_name")
    channel = st.selectbox(
        "Channel",
        CHANNELS,
        index=CHANNELS.index(initial.channel) if initial.channel in CHANNELS else 0,
        key=f"{prefix}_channel",
    )
    target = st.text_input(
        "Target",
        value=initial.target,
        key=f"{prefix}_target",
        help="URL (webhook, slack), e-mail address, or logger name / stdout (log)",
    )
    scopes = st.multiselect(
        "Scopes (none: all)", list(SCOPES), default=list(initial.scopes), key=f"{prefix}_scopes"
    )
    keys_text = st.text_area(
        "Topics and tickers (one per line; none: all)",
        value=initial.keys_text,
        key=f"{prefix}_keys",
        help="Topic names as in the model (Energy / Oil), tickers in upper case or as $cashtags",
    )
    severity = st.selectbox(
        "Minimum severity", SEVERITIES, index=SEVERITIES.index(initial.min_severity), key=f"{prefix}_severity"
    )
    # Only admins choose secrets (dashboards.actions enforces it); others see the stored one.
    secret_editable = user.can("subscription.secret")
    secret_ref = st.text_input(
        "Secret reference",
        value=initial.secret_ref,
        key=f"{prefix}_secret",
        disabled=not secret_editable,
        help="env:NAME or file:/path of the webhook HMAC key, Slack URL or SMTP password "
        "(never the secret itself)" + ("" if secret_editable else "; set by administrators only"),
    )
    digest = st.number_input(
        "Digest every N minutes (0: immediate)",
        min_value=0,
        max_value=24 * 60,
        value=initial.digest_minutes,
        step=5,
        key=f"{prefix}_digest",
    )
    enabled = st.checkbox("Enabled", value=initial.enabled, key=f"{prefix}_enabled")
    return SubscriptionForm(
        name=name,
        channel=channel,
        target=target,
        scopes=tuple(scopes),
        keys_text=keys_text,
        min_severity=severity,
        secret_ref=secret_ref,
        digest_minutes=int(digest),
        enabled=enabled,
    )


def done(message: str) -> None:
    invalidate()
    st.session_state["sub_flash"] = message
    st.rerun()


create_tab, manage_tab = st.tabs(["Create", "Edit, pause, test, delete"])
with create_tab, st.form("sub_create"):
    form = form_fields("new", SubscriptionForm(name="", channel="log"))
    if st.form_submit_button("Create subscription", type="primary"):
        try:
            created = actions.create_subscription(
                ctx.sessions, user, form=form, now=utcnow(), settings=settings
            )
        except (SubscriptionError, SubscriptionExists, PermissionDenied) as exc:
            st.error(str(exc))
        else:
            done(f"created subscription {created.name}")

with manage_tab:
    if not subs:
        st.caption("Nothing to manage yet.")
    else:
        by_name = {s.name: s for s in subs}
        name = st.selectbox("Subscription", list(by_name), key="sub_pick")
        sub = by_name[name]
        cols = st.columns(3)
        toggle = "Resume" if not sub.enabled else "Pause"
        if cols[0].button(toggle, key="sub_toggle"):
            try:
                actions.set_subscription_enabled(ctx.sessions, user, name=name, enabled=not sub.enabled)
            except PermissionDenied as exc:
                st.error(str(exc))
            else:
                done(f"{'resumed' if not sub.enabled else 'paused'} subscription {name}")
        if cols[1].button("Send test notification", key="sub_test"):
            try:
                outcome = actions.test_subscription(
                    ctx.sessions, user, name=name, settings=settings, now=utcnow()
                )
            except PermissionDenied as exc:
                st.error(str(exc))
            except Exception as exc:
                # Its message may quote what a channel read (a URL, a secret): the log gets the
                # type only, the page a fixed line.
                log.error("test notification for subscription %s failed: %s", name, type(exc).__name__)
                st.error("The test notification could not be sent (internal error; see the dashboard log).")
            else:
                if outcome is None:
                    st.error("No such subscription (it was deleted or renamed).")
                else:
                    if outcome.ok:
                        st.success("Test notification delivered.")
                    else:
                        st.error("Test notification not delivered.")
                    # plain text, never Markdown
                    st.text(f"{outcome.description}: {outcome.detail} in {outcome.seconds:.2f} s")
        confirm = cols[2].checkbox("Really delete", key="sub_confirm_delete")
        if cols[2].button("Delete", key="sub_delete", disabled=not confirm):
            try:
                actions.delete_subscription(ctx.sessions, user, name=name)
            except PermissionDenied as exc:
                st.error(str(exc))
            else:
                st.session_state.pop("sub_pick", None)
                done(f"deleted subscription {name}")
        with st.form(f"sub_edit_{name}"):
            current = to_form(sub)
            # The stored values are part of the widget keys: after a pause (or any change) the
            # form starts from what is stored, not from what its widgets held before.
            edited = form_fields(f"edit_{sub.id}_{zlib.crc32(repr(current).encode()):08x}", current)
            if st.form_submit_button("Save changes"):
                try:
                    actions.update_subscription(ctx.sessions, user, name=name, form=edited, settings=settings)
                except (SubscriptionError, SubscriptionExists, PermissionDenied) as exc:
                    st.error(str(exc))
                else:
                    done(f"saved subscription {edited.name}")
