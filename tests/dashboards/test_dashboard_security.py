"""Untrusted headline text is shown as text: never handed to Markdown or HTML elements."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dashboard_seed as seed
import pytest
from dashboard_support import *  # noqa: F403 (the fixtures)
from dashboard_support import errors, open_page, walk

from dashboards import actions
from dashboards.access import PermissionDenied, User
from dashboards.data.subscriptions import SubscriptionForm
from services.delivery import repository as delivery_repo
from services.delivery.repository import add_subscription
from services.delivery.subscriptions import build_subscription
from services.learning.label_store import record_labels
from services.learning.labels import NewLabel
from services.outbound import OutboundPolicy
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


# --------------------------------------------------------------------------- subscriptions and secrets

SECRET_VALUE = "TOPSECRET-not-a-url-4711"


def _add_subscription(db_url: str, **fields: object) -> None:
    """A subscription as an administrator (or the CLI) would store it."""
    engine = make_engine(db_url)
    try:
        with session_factory(engine).begin() as session:
            add_subscription(session, subscription=build_subscription(**fields), now=datetime.now(UTC))  # type: ignore[arg-type]
    finally:
        engine.dispose()


def _everything_shown(at) -> str:
    return "\n".join(str(getattr(node, "proto", "")) for node in walk(at._tree))


def _send_test(at, name: str):
    at.selectbox(key="sub_pick").set_value(name).run()
    at.button(key="sub_test").click().run()
    return at


def test_a_secret_that_is_not_a_url_never_reaches_the_page(make_app, db_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "some-key"
    secret.write_text(SECRET_VALUE + "\n", encoding="utf-8")
    _add_subscription(db_url, name="slack-desk", channel="slack", target=None, secret_ref=f"file:{secret}")
    at = _send_test(open_page(make_app("anna"), "subscriptions"), "slack-desk")
    assert not at.exception
    assert [e.value for e in at.error] == ["Test notification not delivered."]
    assert any(f"secret file:{secret} does not hold an http(s) URL" in t.value for t in at.text)
    assert SECRET_VALUE not in _everything_shown(at)


def test_an_unexpected_error_of_a_test_send_is_one_generic_line(
    make_app, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    def leaky(*args: object, **kwargs: object) -> None:
        raise ValueError(f"unknown url type: {SECRET_VALUE!r}")

    monkeypatch.setattr(actions, "test_subscription", leaky)
    with caplog.at_level(logging.ERROR):
        at = _send_test(open_page(make_app("anna"), "subscriptions"), "ops-log")
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("The test notification could not be sent")
    assert SECRET_VALUE not in _everything_shown(at)
    assert "ValueError" in caplog.text and SECRET_VALUE not in caplog.text


class _ChattyReceiver(BaseHTTPRequestHandler):
    """Answers every POST with 500 and a body full of Markdown."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = MARKDOWN_BODY.encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


MARKDOWN_BODY = "**pwned** [click here](https://evil.example/x) :red[alarm]"


def test_a_receivers_reply_never_reaches_the_page(make_app, db_url: str, monkeypatch) -> None:
    """Only the class of outcome is shown ("HTTP 500"): a reply may hold what an internal
    service says about itself, and Markdown in it must never render either."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChattyReceiver)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        loopback = OutboundPolicy.parse("127.0.0.1")
        _add_subscription(db_url, name="chatty", channel="slack", target=url, policy=loopback)
        refused = _send_test(open_page(make_app("anna"), "subscriptions"), "chatty")
        monkeypatch.setenv("FINSENT_OUTBOUND_ALLOW", "127.0.0.1")  # the operator allows loopback
        at = _send_test(open_page(make_app("anna"), "subscriptions"), "chatty")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert any("loopback address is not allowed" in t.value for t in refused.text)
    assert [e.value for e in at.error] == ["Test notification not delivered."]
    assert any("failed (would be retried) (500): HTTP 500 in " in t.value for t in at.text)
    assert "pwned" not in _everything_shown(at) and "pwned" not in _everything_shown(refused)


def test_only_admins_choose_secret_references(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    analyst, admin = User("anna", "analyst"), User("adam", "admin")
    hook = SubscriptionForm(
        "hook", "webhook", target="https://receiver.example/hook", secret_ref="env:HOOK_KEY"
    )
    try:
        with pytest.raises(PermissionDenied, match="secret reference"):
            actions.create_subscription(sessions, analyst, form=hook, now=now)
        slack = SubscriptionForm("slack", "slack", secret_ref="file:/etc/shadow")
        with pytest.raises(PermissionDenied):
            actions.create_subscription(sessions, analyst, form=slack, now=now)
        actions.create_subscription(sessions, admin, form=hook, now=now)
        # an analyst may tune the filters of an admin's subscription, secret unchanged ...
        tuned = replace(hook, min_severity="critical")
        assert actions.update_subscription(sessions, analyst, name="hook", form=tuned) is not None
        # ... but neither swap the secret nor send the signed requests somewhere else
        for edit in (
            replace(tuned, secret_ref="env:OTHER"),
            replace(tuned, channel="log", target="stdout", secret_ref=""),
            replace(tuned, target="https://attacker.example/"),
            replace(tuned, channel="slack", target=""),
        ):
            with pytest.raises(PermissionDenied):
                actions.update_subscription(sessions, analyst, name="hook", form=edit)
        with sessions() as session:
            stored = delivery_repo.get_subscription(session, name="hook")
        assert stored is not None
        assert (stored.target, stored.secret_ref, stored.min_severity) == (
            "https://receiver.example/hook",
            "env:HOOK_KEY",
            "critical",
        )
        actions.update_subscription(sessions, admin, name="hook", form=replace(tuned, secret_ref="env:OTHER"))
    finally:
        engine.dispose()


def test_the_secret_field_is_read_only_for_analysts(make_app) -> None:
    at = open_page(make_app("anna"), "subscriptions")
    assert at.text_input(key="new_secret").disabled
    at = open_page(make_app("adam"), "subscriptions")
    assert not at.text_input(key="new_secret").disabled
