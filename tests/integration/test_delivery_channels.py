"""Channels against real local servers: e-mail through aiosmtpd (via the dispatcher and
PostgreSQL), and the HTTP outcomes a webhook or Slack receiver can produce."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from services.delivery import repository as repo
from services.delivery.channels import LogChannel, SlackChannel, SmtpConfig, WebhookChannel
from services.delivery.channels.email import EmailChannel, message_id
from services.delivery.dispatcher import Dispatcher
from services.delivery.model import Message, Notification
from services.delivery.subscriptions import build_subscription
from services.outbound import OutboundPolicy
from services.settings import Settings
from services.storage import DeliveryAttemptRow, DeliveryRow

from .delivery_support import (
    T0,
    SmtpSink,
    WebhookReceiver,
    emptied_sessions,
    free_port,
    insert_notification,
    module_engine,  # noqa: F401  (the module's `engine` fixture)
    smtp_server,
    wait_until,
)

pytestmark = pytest.mark.integration

LOCAL = OutboundPolicy.parse("127.0.0.1")  # the receivers here are on loopback: allowed explicitly


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return emptied_sessions(engine)


def email_settings(port: int, **overrides: Any) -> Settings:
    return Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_from="alerts@finsent.example",
        delivery_backoff_initial_seconds=0.02,
        delivery_backoff_max_seconds=0.05,
        delivery_timeout_seconds=5.0,
        **overrides,
    )


ALERT_KEY = "bearish_spike|topic|Energy / Oil|2025-03-03T11:50:00+00:00"


def message(headline: str = "Oil majors slump as crude plunges") -> Message:
    n = Notification(
        outbox_id=1,
        dedupe_key=f"{ALERT_KEY}|open|2025-03-03T12:00:00+00:00",
        alert_key=ALERT_KEY,
        kind="open",
        severity="high",
        scope="topic",
        key="Energy / Oil",
        at=T0,
        payload={"evidence": {"total": 40, "bearish": 25, "p_value": 1e-8}, "headlines": [headline]},
    )
    return Message("key-1", "desk", (n,))


# --------------------------------------------------------------------------- e-mail


def test_email_is_delivered_to_a_real_smtp_server(sessions: sessionmaker[Session]) -> None:
    sink = SmtpSink(replies=["451 4.3.0 try again later"])
    with smtp_server(sink) as port:
        with sessions.begin() as session:
            sub = repo.add_subscription(
                session,
                subscription=build_subscription(name="desk", channel="email", target="desk@example.com"),
                now=datetime.now(UTC),
            )
            dedupe = insert_notification(
                session,
                scope="topic",
                key="Energy / Oil",
                severity="critical",
                headlines=[
                    "Oil majors slump as crude plunges",
                    "<b>OPEC</b> & co.\r\nBcc: victim@example.com",
                ],
            )
        dispatcher = Dispatcher(sessions, email_settings(port))
        try:
            wait_until(lambda: (dispatcher.run_once(), len(sink.messages) == 1)[1])
            for _ in range(3):
                dispatcher.run_once()
        finally:
            dispatcher.close()

    assert sink.attempts == 2 and len(sink.messages) == 1  # a 451, then accepted; never twice
    with sessions() as session:
        delivery = session.scalars(select(DeliveryRow)).one()
        tries = session.scalars(select(DeliveryAttemptRow).order_by(DeliveryAttemptRow.attempt)).all()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert [(a.ok, a.status_code) for a in tries] == [(False, 451), (True, 250)]

    mail = sink.messages[0]
    assert sink.envelopes == [("alerts@finsent.example", ["desk@example.com"])]
    assert mail["From"] == "alerts@finsent.example" and mail["To"] == "desk@example.com"
    assert mail["Message-ID"] == message_id(f"{dedupe}|{sub.id}", "alerts@finsent.example")
    assert mail["Bcc"] is None  # the headline's CR/LF did not inject a header
    subject = mail["Subject"]
    assert subject.startswith("[finsent] [CRITICAL] bearish news spike on topic Energy / Oil")
    assert "25/40 bearish" in subject
    assert mail.get_content_type() == "text/plain" and not mail.is_multipart()
    body = mail.get_content()
    assert "Oil majors slump as crude plunges" in body
    assert "<b>OPEC</b> & co. Bcc: victim@example.com" in body  # plain text, verbatim, one line
    assert f"Idempotency key: {dedupe}|{sub.id}" in body


def test_email_with_a_refused_recipient_is_dead_at_once() -> None:
    sink = SmtpSink(replies=["550 5.1.1 mailbox unavailable"])
    with smtp_server(sink) as port:
        config = SmtpConfig(host="127.0.0.1", port=port, starttls=False, timeout=5)
        result = EmailChannel("nobody@example.com", config).send(message())
    assert (result.verdict, result.status_code) == ("permanent", 550)
    assert "mailbox unavailable" in (result.error or "")


def test_email_to_an_unreachable_server_is_retried() -> None:
    config = SmtpConfig(host="127.0.0.1", port=free_port(), starttls=False, timeout=2)
    result = EmailChannel("desk@example.com", config).send(message())
    assert result.verdict == "retry" and result.status_code is None


# --------------------------------------------------------------------------- HTTP outcomes


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, "delivered"), (204, "delivered"), (400, "permanent"), (401, "permanent"), (410, "permanent"),
     (408, "retry"), (500, "retry"), (502, "retry"), (301, "permanent")],
)  # fmt: skip
def test_webhook_status_codes_are_classified(
    status: int, verdict: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_KEY", "k")
    receiver = WebhookReceiver(default=status, headers={"Location": "http://127.0.0.1:1/elsewhere"})
    with receiver.serve():
        result = WebhookChannel(receiver.url(), "env:HOOK_KEY", timeout=5, policy=LOCAL).send(message())
    assert (result.verdict, result.status_code) == (verdict, status)
    assert len(receiver.requests) == 1  # a redirect is not followed
    assert receiver.requests[0].signed_with("k")


def test_webhook_429_passes_retry_after_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_KEY", "k")
    receiver = WebhookReceiver(default=429, headers={"Retry-After": "7"})
    with receiver.serve():
        result = WebhookChannel(receiver.url(), "env:HOOK_KEY", timeout=5, policy=LOCAL).send(message())
    assert (result.verdict, result.status_code, result.retry_after) == ("retry", 429, 7.0)


def test_webhook_timeout_and_refused_connection_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_KEY", "k")
    receiver = WebhookReceiver(delay=1.5)
    with receiver.serve():
        slow = WebhookChannel(receiver.url(), "env:HOOK_KEY", timeout=0.3, policy=LOCAL).send(message())
    assert slow.verdict == "retry" and "no complete answer within 0.3 s" in (slow.error or "")
    refused = WebhookChannel(
        f"http://127.0.0.1:{free_port()}/", "env:HOOK_KEY", timeout=2, policy=LOCAL
    ).send(message())
    assert refused.verdict == "retry" and "connection failed" in (refused.error or "")


def test_webhook_without_its_secret_is_retried_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_HOOK_KEY", raising=False)
    receiver = WebhookReceiver()
    with receiver.serve():
        result = WebhookChannel(receiver.url(), "env:MISSING_HOOK_KEY", timeout=2, policy=LOCAL).send(
            message()
        )
    assert result.verdict == "retry" and "MISSING_HOOK_KEY is not set" in (result.error or "")
    assert receiver.requests == []


def test_slack_gets_plain_escaped_text() -> None:
    receiver = WebhookReceiver()
    with receiver.serve():
        result = SlackChannel(receiver.url("/services/T0/B0/xyz"), None, timeout=5, policy=LOCAL).send(
            message("Crude <!channel> & <http://evil.example|click>")
        )
    assert result.ok
    body = json.loads(receiver.requests[0].body)
    assert set(body) == {"text", "mrkdwn"} and body["mrkdwn"] is False
    assert body["text"].startswith("[finsent] [HIGH] bearish news spike on topic Energy / Oil (25/40 bearish")
    assert "• Crude &lt;!channel&gt; &amp; &lt;http://evil.example|click&gt;" in body["text"]


def test_log_channel_writes_one_json_line() -> None:
    out = io.StringIO()
    assert LogChannel("stdout", stream=out).send(message()).ok
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["idempotency_key"] == "key-1" and record["notifications"][0]["key"] == "Energy / Oil"
