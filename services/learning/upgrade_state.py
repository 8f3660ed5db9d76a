"""The background upgrade's state file and lock, in FINSENT_HOME/upgrade/.

`state.json` is what the trainer last recorded (services.learning.upgrade_plan.UpgradeState):
written whole to a temporary file and renamed over the old one, so a reader never sees half
a record. `lock` is held (an exclusive `flock`) by the one process training: the kernel
drops it when that process dies however it dies, so a lock file left behind never blocks a
restart, and the pid written into it only says who holds it while it is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from services.learning.upgrade_plan import UpgradeState

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOCK_FILE = "lock"


def read_state(upgrade_dir: Path) -> UpgradeState | None:
    """The recorded state, or None if there is none; a damaged record counts as none (and is
    logged): the worst it causes is one training run too many."""
    path = upgrade_dir / STATE_FILE
    try:
        return UpgradeState.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable upgrade state %s: %s", path, exc)
        return None


def write_state(upgrade_dir: Path, state: UpgradeState) -> None:
    upgrade_dir.mkdir(parents=True, exist_ok=True)
    path = upgrade_dir / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def upgrade_lock(upgrade_dir: Path) -> Iterator[bool]:
    """Yields whether this process holds the upgrade lock; held until the block ends."""
    upgrade_dir.mkdir(parents=True, exist_ok=True)
    with (upgrade_dir / LOCK_FILE).open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            yield True
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_holder(upgrade_dir: Path) -> int | None:
    """The pid of the process holding the upgrade lock, None when nobody holds it (0 when
    somebody does but has not written its pid yet)."""
    path = upgrade_dir / LOCK_FILE
    if not path.is_file():
        return None
    with path.open("r") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text(encoding="utf-8").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None
