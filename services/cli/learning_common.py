"""Helpers shared by `finsent labels …` and `finsent models …` (labels.py, models.py)."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from services.cli.errors import fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T = TypeVar("T")


def quiet_on_load() -> None:
    """The groups' callback: importing services.learning imports services.storage and so
    alembic, whose plugins log at INFO when they load; silence them before any command
    imports anything."""
    from services.cli.common import quiet_alembic

    quiet_alembic()


def in_session(action: Callable[[Session], T], *, read_only: bool = False) -> T:
    """`action` in one transaction on the migrated database; known errors become `fail`.
    `read_only`: as `in_transaction`'s (a missing SQLite file is an error, not created)."""
    from services.cli.common import in_transaction
    from services.learning.holdout import HoldoutError
    from services.learning.registry import RegistryError

    try:
        return in_transaction(action, read_only=read_only)
    except (RegistryError, HoldoutError) as exc:
        fail(str(exc))


def login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return "unknown"


def utc_now() -> datetime:
    return datetime.now(UTC)


def short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
