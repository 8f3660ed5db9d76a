"""Generic webhook: the JSON of `render.webhook_body`, signed with the subscription's secret.

Headers: `X-Finsent-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`,
`X-Finsent-Timestamp` (unix seconds of this attempt) and `Idempotency-Key` (the delivery's
key: identical on every retry and after a dispatcher crash, so a receiver drops repeats).
The body does not change between retries; the timestamp does, and is signed with it
(`render.sign`), so a captured request cannot be replayed past the receiver's tolerance.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.delivery import render
from services.delivery.channels.base import SendResult
from services.delivery.channels.http import PUBLIC_ONLY, post_json
from services.delivery.model import Message
from services.delivery.secrets import SecretError, resolve_secret
from services.delivery.subscriptions import redact_url
from services.outbound import OutboundPolicy


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        url: str,
        secret_ref: str,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
        policy: OutboundPolicy = PUBLIC_ONLY,
    ) -> None:
        self.url = url
        self.policy = policy
        self.secret_ref = secret_ref
        self.timeout = timeout
        self._clock = clock

    def describe(self) -> str:
        return f"webhook {redact_url(self.url)}"

    def send(self, message: Message) -> SendResult:
        try:
            secret = resolve_secret(self.secret_ref)
        except SecretError as exc:  # fixable by the operator: retried, not dead
            return SendResult("retry", None, str(exc))
        body = render.webhook_body(message)
        timestamp = str(int(self._clock()))
        headers = {
            render.SIGNATURE_HEADER: render.sign(body, secret, timestamp=timestamp),
            render.TIMESTAMP_HEADER: timestamp,
            render.IDEMPOTENCY_HEADER: message.idempotency_key,
        }
        return post_json(self.url, body, headers, self.timeout, policy=self.policy)
