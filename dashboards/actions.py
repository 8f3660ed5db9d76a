"""Every write the dashboard makes, each behind a permission check and in one transaction.

Pages only show the buttons a role may use, but the check that counts is here: a viewer
who forges a rerun (or a page bug that shows a button it should not) still gets
`PermissionDenied` and nothing is written. Each action is attributed to the logged-in
user's name, which is also what labels record as their labeller.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from dashboards.access import PermissionDenied, User, require
from dashboards.data.labelling import QueueItem
from dashboards.data.subscriptions import SubscriptionForm, keep_stored_target, to_subscription
from services.alerting import analyst
from services.delivery import repository as delivery_repo
from services.delivery.model import Subscription
from services.delivery.trial import TestOutcome, send_test
from services.learning import events, registry
from services.learning.label_store import record_labels as store_labels
from services.learning.labels import NewLabel
from services.outbound import OutboundPolicy
from services.settings import Settings

__all__ = ["ActionFailed", "PermissionDenied"]

log = logging.getLogger(__name__)
LABEL_SOURCE = "dashboard"


class ActionFailed(ValueError):
    """A permitted write that could not be done (unknown story, registry refused), in one line."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# --------------------------------------------------------------------------- alerts


def acknowledge_alert(sessions: sessionmaker[Session], user: User, *, alert_id: int, now: datetime) -> bool:
    require(user, "alert.act")
    with sessions.begin() as session:
        return analyst.acknowledge_alert(session, alert_id=alert_id, by=user.name, now=now)


def close_alert(sessions: sessionmaker[Session], user: User, *, alert_id: int, now: datetime) -> bool:
    require(user, "alert.act")
    with sessions.begin() as session:
        return analyst.close_alert(session, alert_id=alert_id, by=user.name, now=now)


def reopen_alert(sessions: sessionmaker[Session], user: User, *, alert_id: int) -> bool:
    require(user, "alert.act")
    with sessions.begin() as session:
        return analyst.reopen_alert(session, alert_id=alert_id)


def mute_alert(
    sessions: sessionmaker[Session], user: User, *, alert_id: int, hours: float, now: datetime
) -> datetime:
    require(user, "alert.act")
    with sessions.begin() as session:
        return analyst.mute_alert(session, alert_id=alert_id, by=user.name, now=now, hours=hours)


def unmute_alert(sessions: sessionmaker[Session], user: User, *, alert_id: int) -> bool:
    require(user, "alert.act")
    with sessions.begin() as session:
        return analyst.unmute_alert(session, alert_id=alert_id)


# --------------------------------------------------------------------------- subscriptions


def create_subscription(
    sessions: sessionmaker[Session],
    user: User,
    *,
    form: SubscriptionForm,
    now: datetime,
    settings: Settings | None = None,
) -> Subscription:
    """Validated by the CLI's rules (`SubscriptionError`), `SubscriptionExists` if the name is
    taken; a URL target must be allowed by FINSENT_OUTBOUND_ALLOW (no settings: public only)."""
    require(user, "subscription.edit")
    sub = to_subscription(form, policy=_policy(settings))
    if sub.secret_ref is not None:
        _require_secret(user)
    with sessions.begin() as session:
        return delivery_repo.add_subscription(session, subscription=sub, now=now)


def update_subscription(
    sessions: sessionmaker[Session],
    user: User,
    *,
    name: str,
    form: SubscriptionForm,
    settings: Settings | None = None,
) -> Subscription | None:
    """As `create_subscription`; a target left as the form showed it (masked) stays as stored."""
    require(user, "subscription.edit")
    with sessions.begin() as session:
        current = delivery_repo.get_subscription(session, name=name)
        if current is None:
            return None
        sub = to_subscription(keep_stored_target(form, current), policy=_policy(settings))
        if _touches_secret(current, sub):
            _require_secret(user)
        return delivery_repo.update_subscription(session, name=name, subscription=sub)


def _policy(settings: Settings | None) -> OutboundPolicy:
    return settings.runtime.outbound_policy if settings is not None else OutboundPolicy()


def _require_secret(user: User) -> None:
    if not user.can("subscription.secret"):
        raise PermissionDenied(
            f"{user.name} ({user.role}) may not set a secret reference, nor change the channel or "
            "target of a subscription that has one: ask an administrator"
        )


def _touches_secret(current: Subscription, new: Subscription) -> bool:
    """Does the edit choose a secret, or send an existing one somewhere else? Both decide
    what the server reads from its own files or environment and to whom it goes (a Slack URL
    from a secret, or a webhook's signature), so both are the admin's, not the editor's."""
    if new.secret_ref != current.secret_ref:
        return True
    return current.secret_ref is not None and (new.channel, new.target) != (current.channel, current.target)


def set_subscription_enabled(
    sessions: sessionmaker[Session], user: User, *, name: str, enabled: bool
) -> bool:
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
    with sessions.begin() as session:
        counts = store_labels(session, labels, now=now, recent_share=settings.learning.label_recent_share)
    if counts.errors:
        raise ActionFailed("; ".join(str(e) for e in counts.errors))
    return counts


# --------------------------------------------------------------------------- models


@dataclass(frozen=True, slots=True)
class ChampionChange:
    version: str
    announced: bool  # published on model.events (False: workers find it by polling the registry)
    note: str = ""


def promote_version(
    sessions: sessionmaker[Session],
    user: User,
    *,
    version: str,
    reason: str,
    settings: Settings,
    now: datetime,
) -> ChampionChange:
    """Make `version` the champion, then tell the workers (after the commit, so a worker that
    hears the event finds the registry already changed)."""
    require(user, "model.promote")
    try:
        with sessions.begin() as session:
            row = registry.promote(session, version, by=user.name, reason=reason, now=now)
    except registry.RegistryError as exc:
        raise ActionFailed(_one_line(exc)) from None
    return _announce(settings, row, kind="promoted", now=now)


def rollback_champion(
    sessions: sessionmaker[Session],
    user: User,
    *,
    settings: Settings,
    now: datetime,
    expected_champion: str | None = None,
) -> ChampionChange:
    """Bring back the previous champion (the registry's rule: the current one is rejected).

    `expected_champion` is the champion the confirmation named: if someone promoted another
    version since, the registry refuses (`ActionFailed`) rather than reject a model the
    admin never confirmed."""
    require(user, "model.promote")
    try:
        with sessions.begin() as session:
            row = registry.rollback(
                session,
                by=user.name,
                now=now,
                reason=f"dashboard rollback by {user.name}",
                expected_champion=expected_champion,
            )
    except registry.RegistryError as exc:
        raise ActionFailed(_one_line(exc)) from None
    return _announce(settings, row, kind="rollback", now=now)


def _announce(settings: Settings, row: Any, *, kind: events.EventKind, now: datetime) -> ChampionChange:
    """The registry is the truth and workers poll it, so a broker that does not answer
    delays the switch by one poll interval; it does not undo the promotion."""
    try:
        announced = events.announce_champion(settings, row, kind=kind, at=now)
    except Exception as exc:
        log.warning("model event not published", extra={"version": row.version, "error": str(exc)})
        return ChampionChange(row.version, False, f"model.events not published ({exc}); workers poll")
    return ChampionChange(row.version, announced)
