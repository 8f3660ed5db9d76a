"""Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): `{"text": …}`.

Such a URL is itself the credential, so it may come from the subscription's secret
reference instead of `target`. Slack ignores `Idempotency-Key`; it is sent anyway for
compatible receivers that honour it. A retry after a crash may therefore show twice in Slack.

A URL read from a secret is checked before it is used and never quoted: whatever the
reference points at (a mistyped file, another service's key) must not reach an error
message, which the dashboard and `deliveries.last_error` show.
"""

from __future__ import annotations

from services.delivery import render
from services.delivery.channels.base import SendResult
from services.delivery.channels.http import PUBLIC_ONLY, is_http_url, post_json
from services.delivery.model import Message
from services.delivery.secrets import SecretError, resolve_secret
from services.delivery.subscriptions import redact_url
from services.outbound import OutboundPolicy


class SlackChannel:
    name = "slack"

    def __init__(
        self, target: str, secret_ref: str | None, *, timeout: float, policy: OutboundPolicy = PUBLIC_ONLY
    ) -> None:
        self.target = target
        self.secret_ref = secret_ref
        self.timeout = timeout
        self.policy = policy

    def describe(self) -> str:
        if self.target.startswith("url in "):
            return f"slack {self.target}"
        return f"slack {redact_url(self.target).split('/', 3)[2]}"

    def send(self, message: Message) -> SendResult:
        url = self.target
        if self.target.startswith("url in ") and self.secret_ref is not None:
            try:
                url = resolve_secret(self.secret_ref)
            except SecretError as exc:
                return SendResult("retry", None, str(exc))
            if not is_http_url(url):  # fixable by the operator, like a missing secret: retried
                return SendResult("retry", None, f"secret {self.secret_ref} does not hold an http(s) URL")
        body = render.slack_body(message)
        return post_json(
            url, body, {render.IDEMPOTENCY_HEADER: message.idempotency_key}, self.timeout, policy=self.policy
        )
