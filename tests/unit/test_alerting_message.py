"""The alert message (pure builder) and plain-text headlines."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from services.alerting import (
    WITHDRAWN,
    Detection,
    Story,
    Withdrawal,
    alert_message,
    apply,
    json_safe_evidence,
    plain_text,
    withdrawal_message,
)

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def detection(end: datetime, *, ids: tuple[str, ...] = ("e1", "e2", "e3"), z: float = 6.1) -> Detection:
    return Detection(
        rule="bearish_spike",
        scope="topic",
        key="Energy / Oil",
        window_start=end - 10 * M,
        window_end=end,
        total=14,
        bearish=11,
        baseline_share=0.16,
        baseline_items=480.0,
        expected_bearish=2.24,
        z_score=z,
        p_value=3e-7,
        severity="warning",
        event_ids=ids,
    )


def test_plain_text_unescapes_strips_control_characters_and_truncates() -> None:
    assert plain_text("Oil &amp;amp; gas\n\tslump\u200b  again") == "Oil & gas slump again"
    assert plain_text("<b>x</b> &lt;3") == "<b>x</b> <3"  # text, not HTML: channels escape it
    long = plain_text("word " * 200, limit=50)
    assert len(long) == 50 and long.endswith("…")


def test_open_message_carries_the_evidence_and_quotes_headlines() -> None:
    d = detection(T0)
    action = apply(None, [d], now=T0).actions[0]
    stories = {
        "e1": Story("Crude &amp; gas slump", "https://example.com/1", T0 - 5 * M),
        "e3": Story("OPEC\ncuts", None, T0 - 2 * M),
    }
    created = datetime(2026, 1, 1, tzinfo=UTC)
    msg = alert_message(action, evidence=d.to_dict(), stories=stories, created_at=created, top=2)
    assert msg["dedupe_key"] == action.dedupe_key and msg["alert_key"] == action.alert_key
    assert (msg["kind"], msg["scope"], msg["key"], msg["severity"], msg["status"]) == (
        "open",
        "topic",
        "Energy / Oil",
        "warning",
        "open",
    )
    assert msg["window"] == {"start": (T0 - 10 * M).isoformat(), "end": T0.isoformat()}
    assert msg["counts"] == {"total": 14, "bearish": 11, "share": 11 / 14}
    assert msg["baseline"]["share"] == 0.16 and msg["p_value"] == 3e-7 and msg["z_score"] == 6.1
    assert msg["event_ids"] == ["e1", "e2", "e3"]
    # the first `top` evidence ids, quoted when their text is known (e2 is not)
    assert [h["event_id"] for h in msg["headlines"]] == ["e1"]
    assert msg["headlines"][0]["headline"] == "Crude & gas slump"
    assert msg["at"] == T0.isoformat() and msg["created_at"] == created.isoformat()
    json.dumps(msg, allow_nan=False)  # valid JSON everywhere (PostgreSQL refuses NaN/Infinity)


def test_resolve_message_cites_the_last_detection() -> None:
    first, last = detection(T0), detection(T0 + 3 * M)
    actions = apply(None, [first, last], now=T0 + 20 * M).actions
    resolve = actions[-1]
    assert resolve.kind == "resolve" and resolve.detection is None
    msg = alert_message(resolve, evidence=last.to_dict(), stories={}, created_at=T0)
    assert msg["kind"] == "resolve" and msg["status"] == "resolved"
    assert msg["resolved_at"] == (T0 + 8 * M).isoformat()
    assert msg["window"]["end"] == (T0 + 3 * M).isoformat() and msg["headlines"] == []


def test_non_finite_statistics_become_null() -> None:
    d = detection(T0, z=math.inf)
    assert json_safe_evidence(d.to_dict())["z_score"] is None
    action = apply(None, [d], now=T0).actions[0]
    msg = alert_message(action, evidence=d.to_dict(), stories={}, created_at=T0)
    assert msg["z_score"] is None
    json.dumps(msg, allow_nan=False)


def test_what_happened_says_it_in_one_line() -> None:
    from services.alerting import what_happened

    window = {"window_start": "2025-03-03T11:50:00+00:00", "window_end": "2025-03-03T12:00:00+00:00"}
    surge = {
        **window,
        "bearish": 22,
        "total": 30,
        "tests": ["surge"],
        "usual_bearish": 1.2,
        "baseline_share": 0.5,
    }
    assert (
        what_happened("topic", "Energy / Oil", surge)
        == "Energy / Oil: 22 bearish stories in 10 min, usually ~1"
    )
    new = {**surge, "bearish": 9, "usual_bearish": 0.004}
    assert what_happened("ticker", "NEWCO", new) == "$NEWCO: 9 bearish stories in 10 min, usually none"
    assert what_happened("ticker", "X", {**new, "usual_bearish": 0.34}).endswith("usually ~0.3")
    share = {
        **window,
        "bearish": 9,
        "total": 12,
        "tests": ["share"],
        "usual_bearish": 2.0,
        "baseline_share": 0.2,
    }
    assert (
        what_happened("market", "*", share) == "Whole market: 9 of 12 stories bearish in 10 min, usually 20%"
    )
    assert what_happened("topic", "Macro", surge, resolved=True).startswith("Macro: back to normal after 22 ")
    assert what_happened("topic", "Macro", {}) == "Macro: bearish news spike"
    # evidence stored before the surge test (no tests, no usual count): the share line
    old = {**window, "bearish": 7, "total": 9, "baseline_share": 0.15}
    assert what_happened("topic", "Macro", old) == "Macro: 7 of 9 stories bearish in 10 min, usually 15%"
    assert "\n" not in what_happened("topic", "Evil\nname", surge)


def test_a_surge_message_names_the_tests_and_carries_the_count_evidence() -> None:
    from dataclasses import replace

    d = replace(
        detection(T0), bearish=22, total=30, tests=("surge",), p_share=0.2, p_surge=4e-12,
        p_value=4e-12, usual_bearish=1.3, surge_minutes=3.0,
    )  # fmt: skip
    action = apply(None, [d], now=T0).actions[0]
    msg = alert_message(action, evidence=d.to_dict(), stories={}, created_at=T0)
    assert msg["summary"] == "Energy / Oil: 22 bearish stories in 10 min, usually ~1"
    assert msg["tests"] == ["surge"] and (msg["p_share"], msg["p_surge"]) == (0.2, 4e-12)
    assert msg["surge"] == {"usual_bearish": 1.3, "rate_ratio": 22 / 1.3, "minutes": 3.0}
    json.dumps(msg, allow_nan=False)
    # a never-seen key: no usual count, the ratio is infinite and stored as null
    new = replace(d, usual_bearish=0.0)
    msg = alert_message(
        apply(None, [new], now=T0).actions[0], evidence=new.to_dict(), stories={}, created_at=T0
    )
    assert msg["surge"]["rate_ratio"] is None and msg["summary"].endswith("usually none")
    json.dumps(msg, allow_nan=False)


def test_a_withdrawal_names_the_alert_and_says_why() -> None:
    """The message withdrawing a notified, superseded alert: its own summary line (the
    dispatcher prefixes "withdrawn: "), one dedupe key per alert, the reason."""
    d = detection(T0)
    withdrawal = Withdrawal(
        alert_key="bearish_spike|topic|Financials|x",
        rule="bearish_spike",
        scope="topic",
        key="Financials",
        severity="warning",
        opened_at=T0,
        resolved_at=T0 + 6 * M,
        evidence=json_safe_evidence(d.to_dict()),
    )
    created = datetime(2026, 1, 1, tzinfo=UTC)
    message = withdrawal_message(withdrawal, at=T0 + 2 * 60 * M, created_at=created)
    assert message["kind"] == WITHDRAWN == "withdrawn"
    assert message["dedupe_key"] == "bearish_spike|topic|Financials|x|withdrawn" == withdrawal.dedupe_key
    assert message["summary"] == "Financials: 11 of 14 stories bearish in 10 min, usually 16%"
    assert message["status"] == "superseded" and "late" in message["reason"]
    assert message["at"] == (T0 + 2 * 60 * M).isoformat() and message["opened_at"] == T0.isoformat()
    assert message["resolved_at"] == (T0 + 6 * M).isoformat() and message["event_ids"] == ["e1", "e2", "e3"]
    assert json.loads(json.dumps(message)) == message
