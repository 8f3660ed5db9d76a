"""Roles and what each may do: one pure function (`can`) that every page and every write asks.

Pages hide controls a role may not use, but hiding is cosmetic: the writes in
`dashboards.actions` ask `can` again and refuse, so a crafted rerun (or a page reached by
URL) cannot do what the role may not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

Role = Literal["viewer", "analyst", "admin"]
ROLES: Final[tuple[Role, ...]] = cast(tuple[Role, ...], get_args(Role))

Action = Literal[
    "view",  # every page's read-only content
    "label",  # the labelling queue
    "alert.act",  # acknowledge / close / mute alerts
    "subscription.edit",  # create, edit, pause, delete subscriptions
    "subscription.test",  # send a test notification (it reaches a real receiver)
    # set or change a subscription's secret reference, or where a subscription that has one
    # sends: the dispatcher reads whatever file or variable it names, so choosing it is
    # choosing what the dashboard's server sends to a URL the editor may control
    "subscription.secret",
    "model.promote",  # promote / roll back registry versions
]
ACTIONS: Final[tuple[Action, ...]] = cast(tuple[Action, ...], get_args(Action))

# Each role may do what the roles before it may, plus its own: a strict hierarchy keeps the
# table readable and makes "admin can do everything" true by construction.
_GRANTS: Final[dict[Role, frozenset[Action]]] = {
    "viewer": frozenset({"view"}),
    "analyst": frozenset({"view", "label", "alert.act", "subscription.edit", "subscription.test"}),
    "admin": frozenset(ACTIONS),
}


def can(role: str | None, action: str) -> bool:
    """May `role` do `action`? Unknown roles and actions get no, never an exception: a
    typo in the users file must lock a user out, not let them in."""
    if role not in _GRANTS:
        return False
    return action in _GRANTS[cast(Role, role)]


@dataclass(frozen=True, slots=True)
class User:
    """Who is logged in: `name` is what labels and alert actions are attributed to."""

    name: str
    role: Role
    via: Literal["password", "oidc"] = "password"
    email: str | None = None

    def can(self, action: Action) -> bool:
        return can(self.role, action)


class PermissionDenied(PermissionError):
    """A write the user's role does not allow (shown as a one-line error, never a traceback)."""


def require(user: User | None, action: Action) -> User:
    """`user` if it may do `action`, else `PermissionDenied` naming what was refused."""
    if user is None:
        raise PermissionDenied(f"not logged in: {action} refused")
    if not user.can(action):
        raise PermissionDenied(f"{user.name} ({user.role}) may not {action}")
    return user
