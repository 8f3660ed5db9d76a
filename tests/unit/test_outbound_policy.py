"""The outbound destination policy (pure): public addresses only unless the operator allows more."""

from __future__ import annotations

import pytest

from services.delivery.subscriptions import SubscriptionError, build_subscription
from services.outbound import DestinationDenied, OutboundPolicy
from services.settings import Settings

PUBLIC_ONLY = OutboundPolicy()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # shared address space (carrier NAT)
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("fc00::1", "private"),
    ],
)
def test_non_public_addresses_are_refused_by_default(address: str, kind: str) -> None:
    assert PUBLIC_ONLY.address_denial(address) == kind
    with pytest.raises(DestinationDenied, match=kind):
        PUBLIC_ONLY.check_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert PUBLIC_ONLY.address_denial(address) is None


def test_the_operator_allows_networks_and_names() -> None:
    policy = OutboundPolicy.parse("127.0.0.1, 10.20.0.0/16 ,hooks.internal, .corp.example")
    assert policy.address_denial("127.0.0.1") is None
    assert policy.address_denial("127.0.0.2") == "loopback"
    assert policy.address_denial("10.20.3.4") is None
    assert policy.address_denial("10.21.0.1") == "private"
    assert policy.allows_host("hooks.internal") and policy.allows_host("HOOKS.internal.")
    assert policy.allows_host("a.b.corp.example") and not policy.allows_host("corp.example.evil")
    assert not policy.allows_host("xhooks.internal")


@pytest.mark.parametrize("entry", ["http://x", "10.0.0.0/33", "a b", "-bad.example", "host/path"])
def test_a_bad_allow_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a network"):
        OutboundPolicy.parse(entry)
    with pytest.raises(ValueError, match="neither a network"):
        Settings(outbound_allow=entry)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/x",
        "http://localhost:5432/",
        "http://db.localhost/",
        "ftp://example.com/",
    ],
)
def test_check_url_refuses_what_it_can_tell_without_dns(url: str) -> None:
    with pytest.raises(DestinationDenied):
        PUBLIC_ONLY.check_url(url)


def test_check_url_leaves_names_to_the_connect_time_check() -> None:
    PUBLIC_ONLY.check_url("https://hooks.slack.com/services/T0/B0/x")
    OutboundPolicy.parse("127.0.0.1").check_url("http://127.0.0.1:8080/hook")
    OutboundPolicy.parse("localhost").check_url("http://localhost:8080/hook")


@pytest.mark.parametrize("channel", ["webhook", "slack"])
@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:6379/", "http://169.254.169.254/latest", "http://[::ffff:10.0.0.1]/"]
)
def test_a_subscription_to_an_internal_address_is_refused(channel: str, target: str) -> None:
    with pytest.raises(SubscriptionError, match=r"not allowed .*FINSENT_OUTBOUND_ALLOW"):
        build_subscription(name="s", channel=channel, target=target, secret_ref="env:K")
    allowed = OutboundPolicy.parse("127.0.0.1,169.254.169.254,10.0.0.0/8")
    sub = build_subscription(name="s", channel=channel, target=target, secret_ref="env:K", policy=allowed)
    assert sub.target == target
