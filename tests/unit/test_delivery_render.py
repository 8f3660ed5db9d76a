"""Idempotency keys, signatures and what each channel's message looks like (pure)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.delivery.channels.email import build_email, message_id
from services.delivery.model import Message, Notification
from services.delivery.render import (
    SIGNATURE_TOLERANCE_S,
    delivery_key,
    digest_key,
    log_fields,
    make_test_message,
    plain,
    sign,
    slack_body,
    summary,
    text_body,
    verify,
    webhook_body,
)

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
ALERT = "bearish_spike|topic|Energy / Oil|2025-03-03T11:50:00+00:00"
EVIDENCE = {
    "window_start": "2025-03-03T11:50:00+00:00",
    "window_end": "2025-03-03T12:00:00+00:00",
    "total": 40,
    "bearish": 25,
    "baseline_share": 0.15,
    "p_value": 3.2e-9,
}


def note(kind: str = "open", payload: dict[str, Any] | None = None, outbox_id: int = 1) -> Notification:
    if payload is None:
        payload = {"evidence": EVIDENCE, "headlines": [{"event_id": "e1", "headline": "Crude slumps"}]}
    return Notification(outbox_id, f"{ALERT}|{kind}|{T0.isoformat()}", ALERT, kind, "high", "topic",
                        "Energy / Oil", T0, payload)  # fmt: skip


def test_delivery_key_is_readable_and_hashed_only_when_too_long() -> None:
    assert delivery_key("abc|open|t", 7) == "abc|open|t|7"
    long = delivery_key("x" * 400, 7)
    assert long.startswith("sha256:") and len(long) <= 400
    assert long == delivery_key("x" * 400, 7) != delivery_key("x" * 400, 8)


def test_digest_key_depends_on_the_members_not_their_order() -> None:
    assert digest_key(3, ["b", "a"]) == digest_key(3, ["a", "b"])
    assert digest_key(3, ["a", "b"]) != digest_key(3, ["a", "b", "c"]) != digest_key(4, ["a", "b", "c"])
    assert len(digest_key(3, ["k" * 400] * 1000)) <= 400


def test_signature_is_hmac_sha256_of_the_timestamp_and_the_raw_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(body, "secret", timestamp="1700000000") == f"sha256={expected}"
    now = 1_700_000_010.0
    assert verify(body, "secret", f"sha256={expected}", timestamp="1700000000", now=now)
    assert not verify(body + b" ", "secret", f"sha256={expected}", timestamp="1700000000", now=now)
    assert not verify(body, "other", f"sha256={expected}", timestamp="1700000000", now=now)


def test_a_captured_request_cannot_be_replayed_with_a_fresh_timestamp_or_later() -> None:
    body = b'{"a":1}'
    signature = sign(body, "secret", timestamp="1700000000")
    # a new timestamp header on the captured body and signature: the signature no longer matches
    assert not verify(body, "secret", signature, timestamp="1700000900", now=1_700_000_900.0)
    # the captured request as it was, replayed after the tolerance: refused
    assert verify(
        body, "secret", signature, timestamp="1700000000", now=1_700_000_000.0 + SIGNATURE_TOLERANCE_S
    )
    assert not verify(
        body, "secret", signature, timestamp="1700000000", now=1_700_000_001.0 + SIGNATURE_TOLERANCE_S
    )
    assert not verify(body, "secret", signature, timestamp="not a number", now=1_700_000_000.0)


def test_webhook_body_is_deterministic_and_carries_the_payload() -> None:
    message = Message("idem-1", "desk", (note(),))
    body = webhook_body(message)
    assert body == webhook_body(message)  # the same bytes on every retry
    doc = json.loads(body)
    assert (doc["type"], doc["idempotency_key"], doc["subscription"], doc["count"]) == (
        "alert",
        "idem-1",
        "desk",
        1,
    )
    [n] = doc["notifications"]
    assert n["payload"]["evidence"] == EVIDENCE and n["at"] == "2025-03-03T12:00:00+00:00"
    digest = json.loads(
        webhook_body(Message("d", "desk", (note(), note("resolve", outbox_id=2)), digest=True))
    )
    assert digest["type"] == "digest" and digest["count"] == 2


def test_summary_line() -> None:
    assert summary(note()) == (
        "[HIGH] bearish news spike on topic Energy / Oil "
        "(25/40 bearish in 10 min to 12:00 UTC, baseline 15%, p=3.2e-09)"
    )
    assert summary(note("resolve")) == "[HIGH] resolved: bearish news spike over on topic Energy / Oil"
    bare = Notification(1, "d", "a", "escalate", "critical", "ticker", "AAPL", T0, {})
    assert summary(bare) == "[CRITICAL] bearish news spike escalated on ticker AAPL"
    market = Notification(1, "d", "a", "open", "warning", "market", "*", T0, {"total": 9, "bearish": 7})
    assert summary(market) == "[WARNING] bearish news spike on the whole market (7/9 bearish)"


def test_plain_flattens_control_characters() -> None:
    assert plain("a\r\nBcc: x\x00\x1b[31m\u2028b") == "a Bcc: x [31m b"
    assert plain("x" * 500, 10) == "x" * 9 + "…"


def test_slack_text_is_escaped_plain_text() -> None:
    message = Message("k", "desk", (note(payload={"headlines": ["<!channel> & <https://x|y>"]}),))
    doc = json.loads(slack_body(message))
    assert doc["mrkdwn"] is False
    assert doc["text"].splitlines()[1] == "• &lt;!channel&gt; &amp; &lt;https://x|y&gt;"


def test_email_is_plain_text_with_a_stable_message_id() -> None:
    evil = {"headlines": ["<script>alert(1)</script>\r\nBcc: victim@example.com"], "evidence": EVIDENCE}
    message = Message("idem-1", "desk", (note(payload=evil),))
    mail = build_email(message, sender="alerts@finsent.example", recipient="desk@example.com")
    assert mail["Message-ID"] == message_id("idem-1", "alerts@finsent.example")
    assert (
        mail["Message-ID"]
        == build_email(message, sender="alerts@finsent.example", recipient="x@y.z")["Message-ID"]
    )
    assert mail["Message-ID"].endswith("@finsent.example>")
    assert mail.get_content_type() == "text/plain" and not mail.is_multipart()
    assert mail["Bcc"] is None
    body = mail.get_content()
    assert "  - <script>alert(1)</script> Bcc: victim@example.com" in body  # verbatim, inert
    assert mail["Subject"].startswith("[finsent] [HIGH] bearish news spike on topic Energy / Oil")


def test_digest_text_lists_every_notification() -> None:
    notes = tuple(note(outbox_id=i) for i in range(3))
    body = text_body(Message("k", "desk", notes, digest=True))
    assert body.startswith("[finsent] digest for desk: 3 alert notifications\n")
    assert body.count("* [HIGH] bearish news spike on topic Energy / Oil") == 3


@pytest.mark.parametrize("nonce", ["a", "b"])
def test_test_message_is_marked(nonce: str) -> None:
    message = make_test_message("desk", now=T0, nonce=nonce)
    assert message.test and message.idempotency_key == f"test|desk|{nonce}"
    assert json.loads(webhook_body(message))["type"] == "test"
    assert text_body(message).startswith("[finsent TEST] [WARNING] test notification on the whole market")
    assert "not an alert" in text_body(message)
    assert log_fields(message)["test"] is True


def test_the_alerters_real_message_renders() -> None:
    """Contract with services.alerting.message: its payload is what the outbox holds."""
    from datetime import timedelta

    from services.alerting import Action, Alert, Detection, Story, alert_key, alert_message

    start = T0 - timedelta(minutes=10)
    detection = Detection(
        rule="bearish_spike", scope="ticker", key="XOM", window_start=start, window_end=T0, total=30,
        bearish=18, baseline_share=0.12, baseline_items=400.0, expected_bearish=3.6, z_score=7.5,
        p_value=2e-11, severity="critical", event_ids=("e1", "e2"),
    )  # fmt: skip
    key = alert_key("bearish_spike", "ticker", "XOM", start)
    alert = Alert(key, "bearish_spike", "ticker", "XOM", start, T0, T0, "critical", "critical", T0, 1)
    action = Action(kind="open", alert=alert, at=T0, notify=True, detection=detection)
    payload = alert_message(
        action,
        evidence=detection.to_dict(),
        stories={"e1": Story("Exxon &amp; Chevron\nslump"), "e2": Story("Oil falls")},
        created_at=T0,
    )
    n = Notification(1, action.dedupe_key, key, "open", "critical", "ticker", "XOM", T0, payload)
    assert summary(n) == f"[CRITICAL] {payload['summary']}"
    assert payload["summary"].startswith("$XOM: 18 ")
    esc = Notification(1, action.dedupe_key, key, "escalate", "critical", "ticker", "XOM", T0, payload)
    assert summary(esc) == f"[CRITICAL] escalated: {payload['summary']}"
    body = text_body(Message("k", "desk", (n,)))
    assert "  - Exxon & Chevron slump\n  - Oil falls\n" in body
    assert "  window: 2025-03-03T11:50:00+00:00 to 2025-03-03T12:00:00+00:00" in body


def test_a_withdrawal_renders_as_withdrawn_with_the_alerts_summary() -> None:
    """Contract with services.alerting.message.withdrawal_message: "withdrawn: <summary>"
    on every channel, the reason in the e-mail body; without a summary, still withdrawn."""
    from services.alerting import Withdrawal, withdrawal_message

    withdrawal = Withdrawal(ALERT, "bearish_spike", "topic", "Energy / Oil", "high", T0, None, EVIDENCE)
    payload = withdrawal_message(withdrawal, at=T0, created_at=T0)
    n = Notification(
        7, withdrawal.dedupe_key, ALERT, "withdrawn", "high", "topic", "Energy / Oil", T0, payload
    )
    assert summary(n) == "[HIGH] withdrawn: Energy / Oil: 25 of 40 stories bearish in 10 min, usually 15%"
    body = text_body(Message("k", "desk", (n,)))
    assert body.startswith("[finsent] [HIGH] withdrawn: Energy / Oil: 25 of 40")
    assert "  why: superseded: judged again with stories that arrived late" in body
    assert "withdrawn: Energy / Oil" in json.loads(slack_body(Message("k", "desk", (n,))))["text"]
    bare = note("withdrawn", payload={})
    assert summary(bare) == "[HIGH] withdrawn: bearish news spike on topic Energy / Oil"
