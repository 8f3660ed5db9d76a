"""Login and roles: nothing without a login, a viewer cannot label or promote."""

from __future__ import annotations

from datetime import UTC, datetime

import dashboard_seed as seed
import pytest
from dashboard_support import *  # noqa: F403 (the fixtures)
from dashboard_support import OIDC_EMAIL, PASSWORD, errors
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from dashboards import actions
from dashboards.access import PermissionDenied, User
from dashboards.actions import LabelChoice
from dashboards.auth import SESSION_KEY
from dashboards.data.labelling import QueueItem
from dashboards.data.subscriptions import SubscriptionForm
from services.settings import Settings
from services.storage import LabelRow, make_engine, remove_dashboard_user, session_factory

AUTH_SECRETS = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "x" * 32,
    "client_id": "finsent",
    "client_secret": "s",
    "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
}


def assert_only_login(at) -> None:
    assert [t.value for t in at.title] == ["finsent"]
    assert not at.dataframe and not at.metric and not at.get("vega_lite_chart")
    assert not at.subheader


def test_without_login_only_the_login_form_renders(make_app) -> None:
    at = make_app(None).run()
    assert not at.exception
    assert_only_login(at)
    assert at.text_input(key="login_name") and at.text_input(key="login_password")
    # asking for a page directly shows nothing either: the gate stops before the navigation
    at.switch_page("views/news.py").run()
    assert not at.exception
    assert not {t.value for t in at.title} - {"finsent"}
    assert not at.dataframe and not at.metric and not at.subheader


def test_password_login_through_the_form(make_app) -> None:
    at = make_app(None).run()
    at.text_input(key="login_name").input("anna")
    at.text_input(key="login_password").input("wrong password!")
    at.button[0].click().run()
    assert "wrong password" in at.error[0].value
    assert_only_login(at)
    at.text_input(key="login_name").input("anna")
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run()
    assert not errors(at)
    assert [t.value for t in at.title] == ["Sentiment overview"]
    assert "anna (analyst)" in [t.value for t in at.sidebar.text]


def test_removed_user_is_logged_out_at_the_next_run(make_app, db_url) -> None:
    at = make_app("anna").run()
    assert [t.value for t in at.title] == ["Sentiment overview"]
    engine = make_engine(db_url)  # as `finsent dashboard users remove anna` does, on any host
    with session_factory(engine).begin() as session:
        assert remove_dashboard_user(session, "anna")
    engine.dispose()
    at.run()
    assert SESSION_KEY not in at.session_state
    assert_only_login(at)  # back at the login form, no page content


def _logout_script() -> None:
    import streamlit as st

    from dashboards import auth
    from dashboards.access import User

    if st.session_state.get(auth.SESSION_KEY):
        auth.account_box(User("anna", "analyst"))
    else:
        st.title("logged out")


def test_logout_button_ends_the_session() -> None:
    # (on its own: AppTest drops a multipage app's main-script sidebar after its first run)
    at = AppTest.from_function(_logout_script)
    at.session_state[SESSION_KEY] = {"via": "password", "name": "anna", "hash_tag": "x"}
    at.run()
    at.sidebar.button(key="logout").click().run()
    assert [t.value for t in at.title] == ["logged out"]
    assert SESSION_KEY not in at.session_state


def test_viewer_sees_no_write_controls(make_app) -> None:
    at = make_app("vera").run()
    assert not at.exception
    # the labelling page is not in a viewer's navigation at all
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("views/labelling.py")
    at.switch_page("views/models.py").run()
    assert not errors(at)
    keys = {b.key for b in at.button}
    assert not keys & {"mv_promote", "mv_rollback", "mv_confirm"}
    at.switch_page("views/alerts.py").run()
    assert not {b.key for b in at.button} & {"al_ack", "al_close", "al_mute"}
    at.switch_page("views/subscriptions.py").run()
    assert not {b.key for b in at.button} & {"sub_toggle", "sub_delete", "sub_test"}
    assert not at.form_submit_button


def test_labelling_page_refuses_a_viewer_who_reaches_it(make_app) -> None:
    at = make_app("vera")
    # run the page script on its own, as if reached without the navigation
    at._script_path = str(seed_page("labelling"))
    at.run()
    assert "cannot open this page" in at.error[0].value
    assert not at.button


def seed_page(name: str):
    from dashboard_support import APP

    return APP.parent / "views" / f"{name}.py"


def test_a_viewer_write_is_refused_and_nothing_is_stored(db_url: str) -> None:
    viewer = User("vera", "viewer")
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    settings = Settings(database_url=db_url)
    now = datetime.now(UTC)
    item = QueueItem("uncertain", "sentiment", seed.UNSURE_HEADLINE, "ev-353")
    try:
        with pytest.raises(PermissionDenied):
            actions.record_labels(
                sessions, viewer, choices=[LabelChoice(item, "bearish")], settings=settings, now=now
            )
        with pytest.raises(PermissionDenied):
            actions.promote_version(sessions, viewer, version="v2", reason="x", settings=settings, now=now)
        with pytest.raises(PermissionDenied):
            actions.rollback_champion(sessions, viewer, settings=settings, now=now)
        with pytest.raises(PermissionDenied):
            actions.close_alert(sessions, viewer, alert_id=1, now=now)
        with pytest.raises(PermissionDenied):
            actions.create_subscription(sessions, viewer, form=SubscriptionForm("x", "log"), now=now)
        analyst = User("anna", "analyst")
        with pytest.raises(PermissionDenied):
            actions.promote_version(sessions, analyst, version="v2", reason="x", settings=settings, now=now)
        with sessions() as session:
            assert (
                session.scalar(select(func.count()).select_from(LabelRow).where(LabelRow.labeller == "vera"))
                == 0
            )
    finally:
        engine.dispose()


def test_oidc_login(make_app) -> None:
    at = make_app(None)
    at.secrets["auth"] = AUTH_SECRETS
    at.user = {"is_logged_in": False}
    at.run()
    assert_only_login(at)
    assert at.button(key="oidc_login")
    assert not at.text_input  # no password form when OIDC is configured

    at.user = {"is_logged_in": True, "email": OIDC_EMAIL, "email_verified": True, "name": "Olga"}
    at.run()
    assert not errors(at)
    assert [t.value for t in at.title] == ["Sentiment overview"]
    assert "olga (analyst)" in [t.value for t in at.sidebar.text]

    stranger = _oidc(make_app(None), "stranger@example.com").run()
    assert "no access" in stranger.error[0].value
    assert_only_login(stranger)


def test_oidc_default_role_for_unlisted_users(make_app, monkeypatch) -> None:
    monkeypatch.setenv("FINSENT_DASHBOARD_OIDC_DEFAULT_ROLE", "viewer")
    at = _oidc(make_app(None), "someone@example.com").run()
    assert not errors(at)
    assert "someone@example.com (viewer)" in [t.value for t in at.sidebar.text]


def test_oidc_matches_only_a_verified_email_never_a_name(make_app, monkeypatch) -> None:
    # display names and usernames are the user's to choose at many providers
    for claims in (
        {"email": "mallory@example.com", "email_verified": True, "name": "adam"},
        {"email": "mallory@example.com", "email_verified": True, "preferred_username": "adam"},
        {"email": "mallory@example.com", "email_verified": True, "name": OIDC_EMAIL},
        {"name": "adam"},
    ):
        at = _oidc(make_app(None), **claims).run()
        assert "no access" in at.error[0].value or "verified e-mail" in at.error[0].value, claims
        assert_only_login(at)
    # the right address, but the provider does not vouch for it
    at = _oidc(make_app(None), OIDC_EMAIL, email_verified=False).run()
    assert "verified e-mail" in at.error[0].value
    assert_only_login(at)
    # no email_verified claim at all: refused unless the provider is trusted explicitly
    at = _oidc(make_app(None), OIDC_EMAIL, email_verified=None).run()
    assert "verified e-mail" in at.error[0].value
    monkeypatch.setenv("FINSENT_DASHBOARD_OIDC_TRUST_EMAIL", "true")
    at.run()
    assert not errors(at) and "olga (analyst)" in [t.value for t in at.sidebar.text]
    # trusting absent claims never overrides an explicit false
    at = _oidc(make_app(None), OIDC_EMAIL, email_verified=False).run()
    assert_only_login(at)
    # matched case-insensitively; some providers send the claim as a string
    at = _oidc(make_app(None), OIDC_EMAIL.upper(), email_verified="true").run()
    assert not errors(at) and "olga (analyst)" in [t.value for t in at.sidebar.text]


def test_oidc_default_role_needs_a_verified_email(make_app, monkeypatch) -> None:
    monkeypatch.setenv("FINSENT_DASHBOARD_OIDC_DEFAULT_ROLE", "analyst")
    at = _oidc(make_app(None), "someone@example.com", email_verified=False).run()
    assert_only_login(at)


def _oidc(at, email: str | None = None, *, email_verified: object = True, **claims: object):
    at.secrets["auth"] = AUTH_SECRETS
    user: dict[str, object] = {"is_logged_in": True, **claims}
    if email is not None:
        user["email"] = email
    if email_verified is not None:
        user["email_verified"] = email_verified
    at.user = user
    return at
