"""Subscription matching, key spelling and validation (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.delivery.model import Notification, Subscription
from services.delivery.subscriptions import (
    SubscriptionError,
    build_subscription,
    display_target,
    first_attempt_at,
    matches,
    parse_key,
    plan_fan_out,
    redact_url,
)

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def note(scope: str, key: str, severity: str = "high", outbox_id: int = 1) -> Notification:
    return Notification(outbox_id, f"d{outbox_id}", "a", "open", severity, scope, key, T0)


def sub(**fields: object) -> Subscription:
    base: dict[str, object] = {"name": "s", "channel": "log", "target": "x", "id": 7}
    return Subscription(**{**base, **fields})  # type: ignore[arg-type]


MARKET = note("market", "*")
ENERGY = note("topic", "Energy / Oil")
AAPL = note("ticker", "AAPL")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, (True, True, True)),
        ({"scopes": ("topic",)}, (False, True, False)),
        ({"scopes": ("market", "ticker")}, (True, False, True)),
        ({"keys": ("topic:Energy / Oil",)}, (False, True, False)),  # keys: no market unless asked
        ({"keys": ("ticker:AAPL",), "scopes": ("market", "ticker")}, (True, False, True)),
        ({"keys": ("ticker:AAPL", "topic:Energy / Oil")}, (False, True, True)),
        ({"keys": ("ticker:TSLA",)}, (False, False, False)),
        ({"min_severity": "critical"}, (False, False, False)),
        ({"enabled": False}, (False, False, False)),
    ],
)
def test_matches(fields: dict[str, object], expected: tuple[bool, bool, bool]) -> None:
    s = sub(**fields)
    assert (matches(s, MARKET), matches(s, ENERGY), matches(s, AAPL)) == expected


def test_min_severity_is_a_floor() -> None:
    s = sub(min_severity="high")
    assert [matches(s, note("market", "*", sev)) for sev in ("warning", "high", "critical")] == [
        False,
        True,
        True,
    ]
    assert not matches(sub(), note("market", "*", "bogus"))  # an unknown severity never matches


def test_ticker_keys_match_whatever_the_case_of_the_alert() -> None:
    assert matches(sub(keys=("ticker:BRK.B",)), note("ticker", "brk.b"))


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Energy / Oil", "topic:Energy / Oil"),
        ("IPO", "topic:IPO"),  # an exact topic name wins over the ticker shape
        ("ticker:IPO", "ticker:IPO"),
        ("AAPL", "ticker:AAPL"),
        ("$aapl", "ticker:AAPL"),
        ("BRK.B", "ticker:BRK.B"),
        ("ticker:brk.b", "ticker:BRK.B"),
        ("topic:Macro", "topic:Macro"),
        ("  TSLA ", "ticker:TSLA"),
    ],
)
def test_parse_key(raw: str, key: str) -> None:
    assert parse_key(raw) == key


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("energy / oil", "did you mean 'Energy / Oil'?"),
        ("Energy", "did you mean 'Energy / Oil'?"),
        ("Fed", "did you mean 'Fed / Central Banks'?"),
        ("Earnigns", "did you mean 'Earnings'?"),
        ("aapl", "for the ticker write 'AAPL' or '$aapl'"),  # refused, not guessed
        ("zz top", "(topics: Analyst Update, "),
        ("ticker:not a ticker", "not a ticker"),
        ("$TOOLONGTICKER", "not a ticker"),
    ],
)
def test_parse_key_refuses_with_a_hint(raw: str, hint: str) -> None:
    with pytest.raises(SubscriptionError, match=r"^--key") as info:
        parse_key(raw)
    assert hint in str(info.value) and "\n" not in str(info.value)


def valid(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "name": "desk",
        "channel": "webhook",
        "target": "https://hooks.example.com/finsent",
        "secret_ref": "env:HOOK_KEY",
    }
    return {**fields, **overrides}


def test_build_subscription_normalises() -> None:
    s = build_subscription(
        **valid(scopes=["ticker", "topic", "topic"], keys=["$aapl", "Energy / Oil", "AAPL"]),  # type: ignore[arg-type]
        min_severity="high",
        digest_minutes=15,
    )
    assert s.scopes == ("topic", "ticker")
    assert s.keys == ("ticker:AAPL", "topic:Energy / Oil")
    assert (s.min_severity, s.digest_minutes, s.secret_ref) == ("high", 15, "env:HOOK_KEY")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "bad name!"}, "--name 'bad name!'"),
        ({"channel": "sms"}, "--channel 'sms': unknown channel; choose one of webhook, slack, email, log"),
        (
            {"min_severity": "low"},
            "--min-severity 'low': unknown severity; choose one of warning, high, critical",
        ),
        ({"scopes": ["sector"]}, "--scope 'sector': unknown scope"),
        ({"keys": ["Oil"]}, "unknown topic; did you mean 'Energy / Oil'?"),
        (
            {"scopes": ["ticker"], "keys": ["Earnings"]},
            "'Earnings' is a topic but --scope does not include topic",
        ),
        ({"digest_minutes": 0}, "--digest-minutes 0: must be between 1 and 1440"),
        ({"secret_ref": None}, "a webhook needs --secret-ref"),
        ({"secret_ref": "hunter2"}, "--secret-ref: secret reference must be env:NAME or file:/absolute/path"),
        ({"secret_ref": "file:relative/key"}, "env:NAME or file:/absolute/path"),
        ({"target": "ftp://example.com/x"}, "not an http(s) URL"),
        ({"target": "https://"}, "not an http(s) URL"),
        ({"target": "https://example.com:99999/x"}, "invalid port"),
        ({"target": "https://[::1/x"}, "--target 'https://[::1/x': not a valid URL (Invalid IPv6 URL)"),
        ({"target": None}, "--target is required"),
        ({"channel": "email", "target": "not-an-address"}, "not an e-mail address"),
        ({"channel": "log", "target": "no spaces allowed"}, "a log channel's target is a logger name"),
        ({"channel": "slack", "target": None, "secret_ref": None}, "--target is required"),
    ],
)
def test_build_subscription_errors_are_one_line(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SubscriptionError) as info:
        build_subscription(**valid(**overrides))  # type: ignore[arg-type]
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_the_secret_never_appears_in_an_error() -> None:
    with pytest.raises(SubscriptionError) as info:
        build_subscription(**valid(secret_ref="sk_live_abcdef"))  # type: ignore[arg-type]
    assert "sk_live_abcdef" not in str(info.value)


def test_channel_targets() -> None:
    assert build_subscription(name="l", channel="log", target=None).target == "finsent.alerts"
    assert build_subscription(name="o", channel="log", target="stdout").target == "stdout"
    slack = build_subscription(name="s", channel="slack", target=None, secret_ref="env:SLACK_URL")
    assert slack.target == "url in env:SLACK_URL"
    mail = build_subscription(name="m", channel="email", target="desk@example.com")
    assert mail.target == "desk@example.com" and mail.secret_ref is None


def test_an_unparsable_url_is_shown_without_credentials_or_query() -> None:
    assert redact_url("https://user:pw@[::1/in?token=abc") == "https://[::1/in"
    with pytest.raises(SubscriptionError) as info:
        build_subscription(**valid(target="https://user:pw@[::1/in?token=abc"))  # type: ignore[arg-type]
    assert str(info.value) == "--target 'https://[::1/in': not a valid URL (Invalid IPv6 URL)"


def test_display_target_hides_tokens() -> None:
    hook = sub(channel="webhook", target="https://user:pw@hooks.example.com:8443/in?token=abc")
    assert display_target(hook) == "https://hooks.example.com:8443/in?…"
    slack = sub(channel="slack", target="https://hooks.slack.com/services/T0/B0/secret")
    assert display_target(slack) == "https://hooks.slack.com/…"


def test_first_attempt_at() -> None:
    now = datetime(2025, 3, 3, 12, 7, 30, tzinfo=UTC)
    assert first_attempt_at(sub(), now) == now
    assert first_attempt_at(sub(digest_minutes=5), now) == datetime(2025, 3, 3, 12, 10, tzinfo=UTC)
    assert first_attempt_at(sub(digest_minutes=60), now) == datetime(2025, 3, 3, 13, 0, tzinfo=UTC)
    on_edge = datetime(2025, 3, 3, 12, 10, tzinfo=UTC)  # a period's start belongs to it
    assert first_attempt_at(sub(digest_minutes=5), on_edge) == datetime(2025, 3, 3, 12, 15, tzinfo=UTC)


def test_plan_fan_out() -> None:
    subs = [
        sub(id=1, name="all"),
        sub(id=2, name="aapl", keys=("ticker:AAPL",)),
        sub(id=None, name="unsaved"),
    ]
    notes = [note("market", "*", outbox_id=10), note("ticker", "AAPL", outbox_id=11)]
    planned = plan_fan_out(notes, subs, T0)
    assert [(p.outbox_id, p.subscription_id) for p in planned] == [(10, 1), (11, 1), (11, 2)]
    assert planned[2].idempotency_key == "d11|2" and planned[2].next_attempt_at == T0
