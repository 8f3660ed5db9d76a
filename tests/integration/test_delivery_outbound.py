"""Webhook and Slack sends under the outbound policy, against real servers on 127.0.0.1.

Loopback stands in for every internal address: by default it is refused (nothing reaches
the server), and the tests allow 127.0.0.1 explicitly where they want a send to happen.
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dashboards import actions
from dashboards.access import User
from dashboards.data.subscriptions import SubscriptionForm, keep_stored_target, to_form, to_subscription
from services.delivery import repository as repo
from services.delivery.channels import SlackChannel, WebhookChannel
from services.delivery.channels.http import post_json
from services.delivery.render import make_test_message
from services.delivery.subscriptions import SubscriptionError
from services.outbound import OutboundPolicy
from services.settings import Settings

from .delivery_support import (
    DripServer,
    WebhookReceiver,
    emptied_sessions,
    free_port,
    module_engine,  # noqa: F401  (the module's `engine` fixture)
)

pytestmark = pytest.mark.integration

LOCAL = OutboundPolicy.parse("127.0.0.1")
MESSAGE = make_test_message("t", now=datetime(2030, 1, 1, tzinfo=UTC), nonce="n")
LEAK = b"root password: hunter2 (internal admin console)"
ANALYST = User("ana", "analyst")
ADMIN = User("root", "admin")


def test_a_loopback_webhook_is_refused_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_KEY", "k")
    receiver = WebhookReceiver()
    with receiver.serve():
        denied = WebhookChannel(receiver.url(), "env:HOOK_KEY", timeout=2).send(MESSAGE)
        allowed = WebhookChannel(receiver.url(), "env:HOOK_KEY", timeout=2, policy=LOCAL).send(MESSAGE)
    assert denied.verdict == "permanent" and "loopback address is not allowed" in (denied.error or "")
    assert allowed.verdict == "delivered"
    assert len(receiver.requests) == 1  # only the allowed one


def test_a_name_that_resolves_to_loopback_is_refused_at_connect_time() -> None:
    """The URL names a host, not an address: only the resolver step can tell (DNS rebinding)."""
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    if not addresses or not all(a.startswith("127.") or a == "::1" for a in addresses):
        pytest.skip(f"{name} does not resolve to loopback only here")
    receiver = WebhookReceiver()
    with receiver.serve():
        url = f"http://{name}:{receiver.port}/hook"
        OutboundPolicy().check_url(url)  # nothing to refuse without DNS
        result = post_json(url, b"{}", {}, 2)
        allowed_by_name = post_json(url, b"{}", {}, 2, policy=OutboundPolicy.parse(name))
    assert result.verdict == "permanent" and "loopback" in (result.error or "")
    assert allowed_by_name.verdict == "delivered"
    assert len(receiver.requests) == 1


def test_the_receivers_answer_is_never_shown() -> None:
    receiver = WebhookReceiver(default=500, body=LEAK)
    with receiver.serve():
        result = post_json(receiver.url(), b"{}", {}, 2, policy=LOCAL)
    assert (result.verdict, result.status_code, result.error) == ("retry", 500, "HTTP 500")


def test_refused_and_silent_ports_read_the_same() -> None:
    """A closed port and one that accepts and never answers: no port scan from the outcome."""
    refused = post_json(f"http://127.0.0.1:{free_port()}/", b"{}", {}, 1, policy=LOCAL)
    with DripServer(silent=True).serve() as silent_server:
        silent = post_json(silent_server.url(), b"{}", {}, 1, policy=LOCAL)
    assert refused.verdict == silent.verdict == "retry"
    assert refused.error == silent.error == "connection failed or no complete answer within 1 s"


def test_a_receiver_dripping_bytes_cannot_hold_a_send_past_its_deadline() -> None:
    """A byte every 0.2 s never trips a per-read timeout; the deadline covers the whole request."""
    drip = DripServer(interval=0.2, limit=20)
    with drip.serve():
        t0 = time.monotonic()
        result = post_json(drip.url(), b"{}", {}, 1.5, policy=LOCAL)
        took = time.monotonic() - t0
    assert (
        result.verdict == "retry" and result.error == "connection failed or no complete answer within 1.5 s"
    )
    assert took < 3.0, took


# --------------------------------------------------------------------------- the dashboard


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return emptied_sessions(engine)


def test_an_analyst_cannot_point_a_subscription_at_an_internal_address(
    sessions: sessionmaker[Session],
) -> None:
    now = datetime.now(UTC)
    receiver = WebhookReceiver(default=500, body=LEAK)
    with receiver.serve():
        form = SubscriptionForm(name="probe", channel="slack", target=receiver.url())
        with pytest.raises(SubscriptionError, match="loopback address is not allowed"):
            actions.create_subscription(sessions, ANALYST, form=form, now=now, settings=Settings())
        # a row that got in before the policy existed (or a hand-edited one) is refused at send
        with sessions.begin() as session:
            repo.add_subscription(
                session,
                subscription=to_subscription(form, policy=LOCAL),
                now=now,
            )
        outcome = actions.test_subscription(sessions, ANALYST, name="probe", settings=Settings(), now=now)
        assert outcome is not None and not outcome.ok
        assert "loopback address is not allowed" in outcome.detail
        assert receiver.requests == []
        allowed = Settings(outbound_allow="127.0.0.1")
        outcome = actions.test_subscription(sessions, ANALYST, name="probe", settings=allowed, now=now)
    assert outcome is not None and not outcome.ok
    assert len(receiver.requests) == 1
    assert "hunter2" not in outcome.detail and outcome.detail.endswith("HTTP 500")


def test_a_slack_url_is_masked_in_the_edit_form_and_kept_when_unchanged(
    sessions: sessionmaker[Session],
) -> None:
    url = "https://hooks.slack.com/services/T000/B000/SECRETTOKEN"
    now = datetime.now(UTC)
    form = SubscriptionForm(name="desk", channel="slack", target=url)
    actions.create_subscription(sessions, ANALYST, form=form, now=now, settings=Settings())
    with sessions() as session:
        stored = repo.get_subscription(session, name="desk")
    assert stored is not None and stored.target == url
    shown = to_form(stored)
    assert "SECRETTOKEN" not in shown.target
    assert keep_stored_target(shown, stored).target == url
    changed = SubscriptionForm(name="desk", channel="slack", target=shown.target, min_severity="high")
    actions.update_subscription(sessions, ANALYST, name="desk", form=changed, settings=Settings())
    with sessions() as session:
        updated = repo.get_subscription(session, name="desk")
    assert updated is not None and updated.target == url and updated.min_severity == "high"


def test_a_slack_channel_with_a_loopback_secret_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = WebhookReceiver()
    with receiver.serve():
        monkeypatch.setenv("SLACK_URL", receiver.url())
        result = SlackChannel("url in env:SLACK_URL", "env:SLACK_URL", timeout=2).send(MESSAGE)
    assert result.verdict == "permanent" and receiver.requests == []
    assert receiver.url() not in (result.error or "")
