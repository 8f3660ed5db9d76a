"""Login: OIDC through Streamlit's `st.login` when configured, else users with bcrypt passwords.

Which one is decided by Streamlit's secrets: an `[auth]` section (redirect_uri,
cookie_secret, client_id, client_secret, server_metadata_url, or named providers under it)
means OIDC, and then passwords are not offered at all, so there is one way in to secure.
Without it, users and their bcrypt hashes come from the database's `dashboard_users` table
(written by `finsent dashboard users add`), read through dashboards.data.users, so every
dashboard replica behind a load balancer knows the same users.

Either way the role comes from that table. An OIDC identity is matched by its e-mail
address only, against the entries' `email`, and only when the provider says the address is
verified (`email_verified`): names, display names and preferred usernames are claims a user
can often edit at the provider, and an unverified address may be anybody's, so matching on
them would let a user claim another user's role. A provider that sends no `email_verified`
claim at all is trusted only with `FINSENT_DASHBOARD_OIDC_TRUST_EMAIL=true`. Identities
without a matching entry get `FINSENT_DASHBOARD_OIDC_DEFAULT_ROLE`, by default none, so a
stranger with an account at the identity provider sees nothing. The user is read again
on every script run: removing a user or lowering
a role applies to their open sessions at their next click, and a password change ends
them (the session remembers a fingerprint of the hash it logged in with).

Until a user is resolved, `gate` renders the login form and stops the script: nothing
else of the app runs, not even the navigation.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

import streamlit as st

from dashboards.access import User
from dashboards.context import sessions
from dashboards.data.users import UsersUnavailable, lookup_user, lookup_users
from dashboards.users_file import LoginThrottle, UserEntry, authenticate
from services.settings import Settings

_log = logging.getLogger(__name__)
SESSION_KEY = "finsent_auth"
_throttle = LoginThrottle()


def login_state(entry: UserEntry) -> dict[str, str]:
    """What a password login keeps in the (server-side) session state."""
    return {"via": "password", "name": entry.name, "hash_tag": _hash_tag(entry.password_hash or "")}


def _hash_tag(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:16]


def oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all, or an unreadable one: not configured
        return False


def _unavailable(exc: UsersUnavailable) -> None:
    # The details (host, query) go to the server log only, like any uncaught error's.
    st.error("The dashboard cannot read its users from the database; ask an administrator.")
    _log.warning("dashboard users unreadable: %s", exc)


def _users_or_error(settings: Settings) -> dict[str, UserEntry] | None:
    try:
        return lookup_users(sessions(settings))
    except UsersUnavailable as exc:
        _unavailable(exc)
        return None


def _user_or_error(settings: Settings, name: str) -> UserEntry | UsersUnavailable | None:
    try:
        return lookup_user(sessions(settings), name)
    except UsersUnavailable as exc:
        _unavailable(exc)
        return exc


def current_user(settings: Settings) -> User | None:
    """The logged-in user with their current role, or None."""
    if oidc_configured():
        return _oidc_user(settings)
    state = st.session_state.get(SESSION_KEY)
    if not isinstance(state, dict) or state.get("via") != "password":
        return None
    found = _user_or_error(settings, str(state.get("name")))
    entry = found if isinstance(found, UserEntry) else None
    if (
        entry is None
        or entry.password_hash is None
        or not hmac.compare_digest(str(state.get("hash_tag", "")), _hash_tag(entry.password_hash))
    ):
        st.session_state.pop(SESSION_KEY, None)
        return None
    return User(entry.name, entry.role, "password", entry.email)


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """Who the provider says is logged in: `email` is set only when it may be trusted."""

    email: str | None  # the verified e-mail address, else None
    shown: str  # for "signed in as" only; never used to decide anything


def _oidc_identity(settings: Settings) -> OidcIdentity | None:
    user: Any = st.user
    if not user.get("is_logged_in", False):
        return None
    email = str(user.get("email") or "").strip() or None
    claim = user.get("email_verified")
    verified = _claim_true(claim) if claim is not None else settings.dashboard.dashboard_oidc_trust_email
    shown = email or user.get("preferred_username") or user.get("name") or user.get("sub") or "unknown"
    return OidcIdentity(email if verified else None, str(shown))


def _claim_true(value: object) -> bool:
    # Some providers (AWS Cognito among them) send the claim as the string "true".
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _oidc_user(settings: Settings) -> User | None:
    identity = _oidc_identity(settings)
    if identity is None or identity.email is None:
        return None
    users = _users_or_error(settings) or {}
    entry = _match_oidc(users, email=identity.email)
    if entry is not None:
        return User(entry.name, entry.role, "oidc", identity.email)
    role = settings.dashboard.dashboard_oidc_default_role
    if role == "none":
        return None
    return User(identity.email, role, "oidc", identity.email)


def _match_oidc(users: dict[str, UserEntry], *, email: str) -> UserEntry | None:
    """The entry whose `email` is this (verified) address, case-insensitively; never by name."""
    wanted = email.strip().casefold()
    for entry in users.values():
        if entry.email and entry.email.strip().casefold() == wanted:
            return entry
    return None


def gate(settings: Settings) -> User:
    """The logged-in user; otherwise render the login and stop the script run."""
    user = current_user(settings)
    if user is not None:
        return user
    st.title("finsent")
    if oidc_configured():
        _oidc_login(settings)
    else:
        _password_login(settings)
    st.stop()


def _oidc_login(settings: Settings) -> None:
    identity = _oidc_identity(settings)
    if identity is not None:  # authenticated by the provider, but no role here
        if identity.email is None:
            st.error(
                "Your identity provider did not confirm a verified e-mail address for your account, "
                "so the dashboard cannot tell who you are. Ask an administrator."
            )
        else:
            st.error("Your account has no access to this dashboard. Ask an administrator to add it.")
        st.text(f"signed in as {identity.shown}")
        if st.button("Log out", key="oidc_logout"):
            st.logout()
        return
    st.write("Sign in with your organisation's account.")
    if st.button("Log in", key="oidc_login", type="primary"):
        if settings.dashboard.dashboard_oidc_provider:
            st.login(settings.dashboard.dashboard_oidc_provider)
        else:
            st.login()


def _password_login(settings: Settings) -> None:
    users = _users_or_error(settings)
    if users is not None and not users:
        st.info(
            "No dashboard users exist yet. Create one on the server with "
            "`finsent dashboard users add NAME --role admin`."
        )
    with st.form("login"):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted or users is None:
        return
    name = name.strip()
    client = _client_address()
    wait = _throttle.blocked_for(name, client)
    if wait > 0:
        st.error(f"Too many failed logins; try again in {wait:.0f} s.")
        return
    found = _user_or_error(settings, name)
    if isinstance(found, UsersUnavailable):
        return
    entry = authenticate({found.name: found} if found is not None else {}, name, password)
    if entry is None:
        _throttle.failed(name, client)
        st.error("Unknown user name or wrong password.")
        return
    _throttle.succeeded(name, client)
    st.session_state[SESSION_KEY] = login_state(entry)
    st.rerun()


def _client_address() -> str:
    """The address of this session's connection, for the login throttle (Streamlit gives
    None for a browser on the same host)."""
    try:
        address = st.context.ip_address
    except Exception:  # outside a running app (AppTest): one shared address
        address = None
    return address or "local"


def logout(user: User) -> None:
    st.session_state.pop(SESSION_KEY, None)
    if user.via == "oidc":
        st.logout()
    st.rerun()


def account_box(user: User) -> None:
    """Who is logged in, and the way out (sidebar)."""
    with st.sidebar:
        st.text(f"{user.name} ({user.role})")
        if st.button("Log out", key="logout"):
            logout(user)
