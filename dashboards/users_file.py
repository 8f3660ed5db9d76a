"""Dashboard users' passwords and the older per-host users file; no Streamlit import.

Users live in the database (services.storage, table `dashboard_users`); what stays here is
what does not depend on where they are kept: names, bcrypt hashing and checking, the login
throttle, and the TOML users file older versions kept on each dashboard host, which
`finsent dashboard users import-file` reads to move its users into the database (and tests
write, to make such a file).

Format::

    [users.alice]
    role = "analyst"
    password_hash = "$2b$12$..."      # absent for an OIDC-only user
    email = "alice@example.com"       # optional: matches an OIDC login to this entry
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import bcrypt

from dashboards.access import ROLES, Role

NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
DEFAULT_ROUNDS: Final = 12
MIN_PASSWORD_LENGTH: Final = 8
# bcrypt reads at most 72 bytes; longer passwords would silently match on their prefix.
MAX_PASSWORD_BYTES: Final = 72


class UsersFileError(ValueError):
    """The users file or an entry is unusable, in one line."""


@dataclass(frozen=True, slots=True)
class UserEntry:
    name: str
    role: Role
    password_hash: str | None = None
    email: str | None = None


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise UsersFileError(
            f"user name {name!r}: use 1-100 letters, digits, '.', '_', '@', '+' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsersFileError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise UsersFileError(f"password: at most {MAX_PASSWORD_BYTES} bytes (bcrypt ignores the rest)")


def hash_password(password: str, *, rounds: int = DEFAULT_ROUNDS) -> str:
    check_password(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def verify_password(password: str, password_hash: str | None) -> bool:
    """Constant-time check; a missing or malformed hash is a mismatch, never an error."""
    if not password_hash:
        return False
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(encoded, password_hash.encode("ascii"))
    except ValueError:
        return False


# A well-formed hash to check against when the user does not exist, so a login attempt for
# an unknown name costs as long as one for a known name (no user enumeration by timing).
_DUMMY_HASH: Final = "$2b$12$1NCNw69.Zj5Re.aql2ywFe6C4RJ6XeagymObWZmiWaRrt3PP6xafW"


def authenticate(users: Mapping[str, UserEntry], name: str, password: str) -> UserEntry | None:
    entry = users.get(name)
    if entry is None or entry.password_hash is None:
        verify_password(password, _DUMMY_HASH)
        return None
    return entry if verify_password(password, entry.password_hash) else None


def parse_users(data: Mapping[str, Any], *, source: str = "users file") -> dict[str, UserEntry]:
    table = data.get("users", {})
    if not isinstance(table, dict):
        raise UsersFileError(f"{source}: [users] must be a table")
    users: dict[str, UserEntry] = {}
    for name, raw in table.items():
        if not isinstance(raw, dict):
            raise UsersFileError(f"{source}: [users.{name}] must be a table")
        check_name(name)
        role = raw.get("role")
        if role not in ROLES:
            raise UsersFileError(f"{source}: user {name!r}: role must be one of {', '.join(ROLES)}")
        password_hash = raw.get("password_hash")
        email = raw.get("email")
        if password_hash is not None and not isinstance(password_hash, str):
            raise UsersFileError(f"{source}: user {name!r}: password_hash must be a string")
        if email is not None and not isinstance(email, str):
            raise UsersFileError(f"{source}: user {name!r}: email must be a string")
        users[name] = UserEntry(name, cast(Role, role), password_hash, email)
    return users


def read_users(path: Path) -> dict[str, UserEntry]:
    """The users in `path`; an absent file means no users (nobody can log in with a password)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsersFileError(f"{path}: not valid TOML: {exc}") from None
    return parse_users(data, source=str(path))


def _toml_string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; ensure_ascii=False avoids
    # \\ud83d-style surrogate pairs, which TOML does not accept.
    return json.dumps(value, ensure_ascii=False)


def render_users(users: Mapping[str, UserEntry]) -> str:
    lines = [
        "# finsent dashboard users: written by `finsent dashboard users add`; do not edit hashes by hand",
        "",
    ]
    for name in sorted(users):
        entry = users[name]
        lines.append(f"[users.{_toml_string(name)}]")
        lines.append(f"role = {_toml_string(entry.role)}")
        if entry.password_hash is not None:
            lines.append(f"password_hash = {_toml_string(entry.password_hash)}")
        if entry.email is not None:
            lines.append(f"email = {_toml_string(entry.email)}")
        lines.append("")
    return "\n".join(lines)


def write_users(path: Path, users: Mapping[str, UserEntry]) -> None:
    """Replace `path` atomically with owner-only permissions (it holds password hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".users-", suffix=".toml", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(render_users(users))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def upsert_user(path: Path, entry: UserEntry) -> bool:
    """Add or replace one user; True if it was new."""
    check_name(entry.name)
    if entry.role not in ROLES:
        raise UsersFileError(f"role must be one of {', '.join(ROLES)}")
    users = read_users(path)
    new = entry.name not in users
    users[entry.name] = entry
    write_users(path, users)
    return new


def remove_user(path: Path, name: str) -> bool:
    users = read_users(path)
    if users.pop(name, None) is None:
        return False
    write_users(path, users)
    return True


class LoginThrottle:
    """Failed logins, counted three ways within `window` seconds, to slow password guessing
    without letting anyone lock a user out:

    - per (user name, client address): after `max_failures`, that name is refused from that
      address for the rest of the window; the same name from another address is not (keyed
      on the name alone, anyone could lock out an admin by failing five logins as them);
    - per client address: after `max_client_failures` under any names, the address is
      refused (one address spraying names);
    - globally: after `max_global_failures` from all addresses, every address with a failure
      in the window is refused until the rate drops; an address with none still gets its
      tries, so the real user is not locked out by a spread-out attack, which is held to a
      few guesses per address per window.

    A success clears that (name, address) pair only. Per dashboard process, so opening a new
    browser session does not reset it; with several replicas each counts its own, and the
    load balancer's stickiness keeps one client on one replica (docs/operations.md, "Several
    dashboard replicas"); bcrypt's cost already slows each guess. The client address is the
    connection's (`st.context.ip_address`)."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        max_client_failures: int = 20,
        max_global_failures: int = 100,
        window: float = 300.0,
    ) -> None:
        self.max_failures = max_failures
        self.max_client_failures = max_client_failures
        self.max_global_failures = max_global_failures
        self.window = window
        self._lock = threading.Lock()
        self._failures: list[tuple[float, str, str]] = []  # (time, name, client), oldest first

    def _recent(self, now: float) -> list[tuple[float, str, str]]:
        cut = 0
        while cut < len(self._failures) and now - self._failures[cut][0] >= self.window:
            cut += 1
        del self._failures[:cut]
        return self._failures

    def _wait(self, times: list[float], limit: int, now: float) -> float:
        if len(times) < limit:
            return 0.0
        return max(0.0, self.window - (now - times[-limit]))

    def blocked_for(self, name: str, client: str, *, now: float | None = None) -> float:
        """Seconds until `name` may try again from `client` (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent(now)
            pair = [t for t, n, c in recent if n == name and c == client]
            from_client = [t for t, _, c in recent if c == client]
            waits = [
                self._wait(pair, self.max_failures, now),
                self._wait(from_client, self.max_client_failures, now),
            ]
            if from_client and len(recent) >= self.max_global_failures:
                waits.append(self._wait([t for t, _, _ in recent], self.max_global_failures, now))
            return max(waits)

    def failed(self, name: str, client: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(now).append((now, name, client))

    def succeeded(self, name: str, client: str) -> None:
        with self._lock:
            self._failures = [f for f in self._failures if (f[1], f[2]) != (name, client)]
