"""Channels: how a message reaches a subscriber (webhook, Slack, e-mail, log).

`build_channel` turns a subscription and the settings into a channel; each channel's
`send` returns a classified `SendResult` and never raises (see base.py).
"""

from __future__ import annotations

from services.delivery.channels.base import Channel, MisconfiguredChannel, SendResult
from services.delivery.channels.email import EmailChannel, SmtpConfig
from services.delivery.channels.log import LogChannel
from services.delivery.channels.slack import SlackChannel
from services.delivery.channels.webhook import WebhookChannel
from services.delivery.model import Subscription
from services.settings import Settings

__all__ = [
    "Channel",
    "EmailChannel",
    "LogChannel",
    "MisconfiguredChannel",
    "SendResult",
    "SlackChannel",
    "SmtpConfig",
    "WebhookChannel",
    "build_channel",
    "smtp_config",
]


def smtp_config(settings: Settings) -> SmtpConfig:
    return SmtpConfig(
        host=settings.delivery.smtp_host,
        port=settings.delivery.smtp_port,
        user=settings.delivery.smtp_user,
        password_file=settings.delivery.smtp_password_file,
        sender=settings.delivery.smtp_from,
        starttls=settings.delivery.smtp_starttls,
        timeout=settings.delivery.delivery_timeout_seconds,
    )


def build_channel(subscription: Subscription, settings: Settings) -> Channel:
    timeout = settings.delivery.delivery_timeout_seconds
    if subscription.channel == "webhook":
        if subscription.secret_ref is None:  # refused when added; a hand-edited row ends here
            return MisconfiguredChannel("a webhook subscription needs a secret reference")
        return WebhookChannel(
            subscription.target,
            subscription.secret_ref,
            timeout=timeout,
            policy=settings.runtime.outbound_policy,
        )
    if subscription.channel == "slack":
        return SlackChannel(
            subscription.target,
            subscription.secret_ref,
            timeout=timeout,
            policy=settings.runtime.outbound_policy,
        )
    if subscription.channel == "email":
        return EmailChannel(subscription.target, smtp_config(settings), subscription.secret_ref)
    if subscription.channel == "log":
        return LogChannel(subscription.target)
    return MisconfiguredChannel(f"unknown channel {subscription.channel!r}")
