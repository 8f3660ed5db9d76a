"""Every write the dashboard makes, each behind a permission check and in one transaction.

Pages only show the buttons a role may use, but the check that counts is here: a viewer
who forges a rerun (or a page bug that shows a button it should not) still gets
`PermissionDenied` and nothing is written. Each action is attributed to the logged-in
user's name, which is also what labels record as their labeller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from dashboards.access import PermissionDenied, User, require
from dashboards.data import alerts as alert_data
from dashboards.data.labelling import QueueItem
from dashboards.data.subscriptions import SubscriptionForm, TestOutcome, send_test, to_subscription
from services.delivery import repository as delivery_repo
from services.delivery.model import Subscription
from services.settings import Settings

__all__ = ["LearningUnavailable", "PermissionDenied"]

LABEL_SOURCE = "dashboard"


class LearningUnavailable(RuntimeError):
    """services.learning (label store, registry) is not installed in this build."""


# --------------------------------------------------------------------------- alerts


def acknowledge_alert(sessions: sessionmaker[Session], user: User, *, alert_id: int, now: datetime) -> bool:
    require(user, "alert.act")
    with sessions.begin() as session:
        return alert_data.acknowledge(session, alert_id=alert_id, by=user.name, now=now)


def close_alert(sessions: sessionmaker[Session], user: User, *, alert_id: int, now: datetime) -> bool:
    require(user, "alert.act")
    with sessions.begin() as session:
        return alert_data.close(session, alert_id=alert_id, by=user.name, now=now)


def reopen_alert(sessions: sessionmaker[Session], user: User, *, alert_id: int) -> bool:
    require(user, "alert.act")
    with sessions.begin() as session:
        return alert_data.reopen(session, alert_id=alert_id)


def mute_alert(
    sessions: sessionmaker[Session], user: User, *, alert_id: int, hours: float, now: datetime
) -> datetime:
    require(user, "alert.act")
    with sessions.begin() as session:
        return alert_data.mute(session, alert_id=alert_id, by=user.name, now=now, hours=hours)


def unmute_alert(sessions: sessionmaker[Session], user: User, *, alert_id: int) -> bool:
    require(user, "alert.act")
    with sessions.begin() as session:
        return alert_data.unmute(session, alert_id=alert_id)


# --------------------------------------------------------------------------- subscriptions


def create_subscription(
    sessions: sessionmaker[Session], user: User, *, form: SubscriptionForm, now: datetime
) -> Subscription:
    """Validated by the CLI's rules (`SubscriptionError`), `SubscriptionExists` if the name is taken."""
    require(user, "subscription.edit")
    sub = to_subscription(form)
    with sessions.begin() as session:
        return delivery_repo.add_subscription(session, subscription=sub, now=now)


def update_subscription(
    sessions: sessionmaker[Session], user: User, *, name: str, form: SubscriptionForm
) -> Subscription | None:
    require(user, "subscription.edit")
    sub = to_subscription(form)
    with sessions.begin() as session:
        return delivery_repo.update_subscription(session, name=name, subscription=sub)


def set_subscription_enabled(sessions: sessionmaker[Session], user: User, *, name: str, enabled: bool) -> bool:
    require(user, "subscription.edit")
    with sessions.begin() as session:
        return delivery_repo.set_subscription_enabled(session, name=name, enabled=enabled)


def delete_subscription(sessions: sessionmaker[Session], user: User, *, name: str) -> bool:
    require(user, "subscription.edit")
    with sessions.begin() as session:
        return delivery_repo.remove_subscription(session, name=name)


def test_subscription(
    sessions: sessionmaker[Session], user: User, *, name: str, settings: Settings, now: datetime
) -> TestOutcome | None:
    require(user, "subscription.test")
    with sessions() as session:
        sub = delivery_repo.get_subscription(session, name=name)
    return None if sub is None else send_test(sub, settings, now=now)


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True, slots=True)
class LabelChoice:
    item: QueueItem
    label: str


def recent_share(settings: Settings) -> float:
    """Share of new labels held out as the recent holdout (a services.learning setting)."""
    for name in ("label_recent_share", "recent_holdout_share", "learning_recent_share"):
        value = getattr(settings, name, None)
        if isinstance(value, int | float):
            return float(value)
    raise LearningUnavailable("no recent-holdout share setting found in services.settings")


def record_labels(
    sessions: sessionmaker[Session],
    user: User,
    *,
    choices: Sequence[LabelChoice],
    settings: Settings,
    now: datetime,
) -> Any:
    """Write the analyst's labels to the label store, attributed to `user.name`."""
    require(user, "label")
    try:
        from services.learning.label_store import record_labels as store_labels
        from services.learning.labels import NewLabel
    except ImportError as exc:
        raise LearningUnavailable(f"the label store is not available: {exc}") from None
    labels = [
        NewLabel(
            text=c.item.text,
            task=c.item.task,
            label=c.label,
            labeller=user.name,
            source=LABEL_SOURCE,
            event_id=c.item.event_id,
        )
        for c in choices
    ]
    share = recent_share(settings)
    with sessions.begin() as session:
        return store_labels(session, labels, now=now, recent_share=share)


# --------------------------------------------------------------------------- models


def promote_version(
    sessions: sessionmaker[Session], user: User, *, version: str, reason: str, settings: Settings, now: datetime
) -> Any:
    """Make `version` the champion, then tell the workers (after the commit, so a worker that
    hears the event finds the registry already changed)."""
    require(user, "model.promote")
    try:
        from services.learning import events, registry
    except ImportError as exc:
        raise LearningUnavailable(f"the model registry is not available: {exc}") from None
    with sessions.begin() as session:
        row = registry.promote(session, version, by=user.name, reason=reason, now=now)
    events.announce_champion(settings, row)
    return row


def rollback_champion(sessions: sessionmaker[Session], user: User, *, settings: Settings, now: datetime) -> Any:
    require(user, "model.promote")
    try:
        from services.learning import events, registry
    except ImportError as exc:
        raise LearningUnavailable(f"the model registry is not available: {exc}") from None
    with sessions.begin() as session:
        row = registry.rollback(session, by=user.name, now=now)
    events.announce_champion(settings, row)
    return row
