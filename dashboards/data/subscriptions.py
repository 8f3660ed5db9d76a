"""Subscriptions for the dashboard: the CLI's validation and channels, a form's input shape.

Nothing is validated here: `build_subscription` (services.delivery.subscriptions) is the one
place that decides what a valid subscription is, for `finsent subscriptions add` and for
this page alike; a test send is `services.delivery.trial.send_test`, as for `finsent
subscriptions test`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pandas as pd

from services.delivery.model import Subscription
from services.delivery.subscriptions import PUBLIC_ONLY, build_subscription, display_target
from services.outbound import OutboundPolicy


@dataclass(frozen=True, slots=True)
class SubscriptionForm:
    """What the page's form collects, as typed (keys: one per line or comma-separated)."""

    name: str
    channel: str
    target: str = ""
    scopes: tuple[str, ...] = ()
    keys_text: str = ""
    min_severity: str = "warning"
    secret_ref: str = ""
    digest_minutes: int = 0  # 0: immediate
    enabled: bool = True


def split_keys(text: str) -> list[str]:
    """Keys as typed: newline- or comma-separated, except inside a topic name such as
    "Fed / Central Banks", which has no comma."""
    return [k.strip() for k in re.split(r"[\n,]", text) if k.strip()]


def to_subscription(form: SubscriptionForm, *, policy: OutboundPolicy = PUBLIC_ONLY) -> Subscription:
    """A validated subscription, or `SubscriptionError` (the CLI's message, --flag names included);
    a URL target must be allowed by the outbound `policy`."""
    sub = build_subscription(
        name=form.name,
        channel=form.channel,
        target=form.target or None,
        scopes=form.scopes,
        keys=split_keys(form.keys_text),
        min_severity=form.min_severity,
        secret_ref=form.secret_ref.strip() or None,
        digest_minutes=form.digest_minutes or None,
        policy=policy,
    )
    return replace(sub, enabled=form.enabled)


def to_form(sub: Subscription) -> SubscriptionForm:
    """The edit form's starting values. A Slack URL is a credential and a webhook URL may
    carry one (user:pass@, ?token=): the form shows the masked target, as lists do, and
    `keep_stored_target` puts the stored one back if the user leaves it unchanged."""
    return SubscriptionForm(
        name=sub.name,
        channel=sub.channel,
        target=display_target(sub),
        scopes=tuple(sub.scopes),
        keys_text="\n".join(sub.keys),
        min_severity=sub.min_severity,
        secret_ref=sub.secret_ref or "",
        digest_minutes=sub.digest_minutes or 0,
        enabled=sub.enabled,
    )


def keep_stored_target(form: SubscriptionForm, current: Subscription) -> SubscriptionForm:
    """`form` with the stored target if it still shows the masked one `to_form` put there."""
    if form.channel == current.channel and form.target == display_target(current):
        return replace(form, target="" if current.target.startswith("url in ") else current.target)
    return form


def subscriptions_frame(subs: list[Subscription]) -> pd.DataFrame:
    rows = [
        (
            s.name,
            "yes" if s.enabled else "paused",
            s.channel,
            display_target(s),
            ", ".join(s.scopes) or "all",
            ", ".join(s.keys) or "all",
            s.min_severity,
            f"digest {s.digest_minutes} min" if s.digest_minutes else "immediate",
        )
        for s in subs
    ]
    columns = ["name", "enabled", "channel", "target", "scopes", "keys", "min severity", "delivery"]
    return pd.DataFrame(rows, columns=columns)
