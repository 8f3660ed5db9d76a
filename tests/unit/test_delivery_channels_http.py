"""The HTTP channels never raise and never quote a URL or a secret in their errors.

A Slack URL is itself a credential, and a URL read from a secret reference is the secret's
value: before this was guarded, a secret that was no URL came back as urllib's
"unknown url type: '<the whole value>'" on the dashboard.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.delivery.channels import SlackChannel, WebhookChannel
from services.delivery.channels.http import is_http_url, post_json
from services.delivery.render import make_test_message
from services.outbound import OutboundPolicy

SECRET = "xoxb-TOPSECRET-4711"
LOCAL = OutboundPolicy.parse("127.0.0.1")  # allowed explicitly: the tests' servers are on loopback
MESSAGE = make_test_message("t", now=datetime(2030, 1, 1, tzinfo=UTC), nonce="n")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nobody listens once it is closed


@pytest.mark.parametrize(
    "value",
    [SECRET, f"sk:{SECRET}", f"ftp://host/{SECRET}", f"https:///{SECRET}", f"https://host:99999/{SECRET}"],
)
def test_a_slack_secret_that_is_not_an_http_url_is_named_not_shown(
    value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SLACK_URL", value)
    result = SlackChannel("url in env:SLACK_URL", "env:SLACK_URL", timeout=1).send(MESSAGE)
    assert result.verdict == "retry"
    assert result.error == "secret env:SLACK_URL does not hold an http(s) URL"
    path = tmp_path / "hook"
    path.write_text(value + "\n")
    result = SlackChannel(f"url in file:{path}", f"file:{path}", timeout=1).send(MESSAGE)
    assert result.error == f"secret file:{path} does not hold an http(s) URL"


@pytest.mark.parametrize(
    "url", [SECRET, f"javascript:{SECRET}", f"http://exa mple/{SECRET}", f"http://h/{SECRET}\r\nX: y"]
)
def test_post_json_refuses_a_non_url_without_quoting_it(url: str) -> None:
    result = post_json(url, b"{}", {}, 1)
    assert result.verdict == "permanent" and SECRET not in (result.error or "")


def test_connection_errors_do_not_quote_the_url() -> None:
    url = f"http://127.0.0.1:{closed_port()}/services/T0/B0/{SECRET}"
    result = post_json(url, b"{}", {}, 2, policy=LOCAL)
    assert result.verdict == "retry" and "connection failed" in (result.error or "")
    assert SECRET not in (result.error or "")


def test_an_invalid_header_is_a_result_not_an_exception() -> None:
    # http.client refuses it with a ValueError that quotes the value
    url = f"http://127.0.0.1:{closed_port()}/hook"
    result = post_json(url, b"{}", {"X-Test": f"{SECRET}\n"}, 2, policy=LOCAL)
    assert result.verdict == "retry"
    assert SECRET not in (result.error or "")


def test_a_hand_edited_webhook_target_fails_permanently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_KEY", "k")
    result = WebhookChannel(f"file:/{SECRET}", "env:HOOK_KEY", timeout=1).send(MESSAGE)
    assert result.verdict == "permanent" and SECRET not in (result.error or "")


def test_is_http_url() -> None:
    assert is_http_url("https://hooks.slack.com/services/T0/B0/x")
    assert is_http_url("http://127.0.0.1:8080/hook?x=1")
    for bad in ("", "hooks.slack.com/x", "https://", "https://h:0x1/", "https://h/ x", "file:///etc/passwd"):
        assert not is_http_url(bad), bad
