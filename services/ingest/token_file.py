"""The ingest tokens file (FINSENT_INGEST_TOKENS_FILE) and the live view a server keeps of it.

JSON, `{"tokens": [{"name", "sha256", "created", "revoked"}]}`, written by `finsent tokens`
only: under an exclusive lock (two `tokens add` at once cannot lose one), to a temporary
file renamed over the old one (a reader never sees half a file), mode 0600.

`TokenWatcher` is what `serve-http` asks on each request. It looks at the file's
(mtime, size, inode) at most once a second and re-reads it only when that changed, so a
`finsent tokens revoke` takes effect within about a second without a restart, at the cost
of one stat() a second. A file that becomes unreadable or malformed while the server runs
counts as holding no tokens (fail closed: a hand edit that breaks the file must not keep a
revoked token alive), logged once per change; hashes from the setting keep working.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.ingest.tokens import TokenConfigError, TokenRecord, check_name, hash_token, new_token

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1_000_000  # thousands of tokens; a bigger file is a mistake, not a token list
CHECK_INTERVAL_S = 1.0


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TokenConfigError(f"{where}: expected an ISO 8601 timestamp or null")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise TokenConfigError(f"{where}: {value!r} is not an ISO 8601 timestamp") from None


def parse_tokens(text: str, *, source: str) -> list[TokenRecord]:
    """The records of a tokens file's text (pure); `TokenConfigError` naming what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenConfigError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise TokenConfigError(f'{source} must be a JSON object {{"tokens": [...]}}')
    records: list[TokenRecord] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{source}: token {index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise TokenConfigError(f"{where} has no name")
        digest = entry.get("sha256")
        if (
            not isinstance(digest, str)
            or len(digest) != 64
            or not all(c in "0123456789abcdef" for c in digest)
        ):
            raise TokenConfigError(f"{where} ({entry['name']}): sha256 must be 64 lowercase hex digits")
        name = check_name(entry["name"])
        if name in names:
            raise TokenConfigError(f"{source} names {name!r} twice")
        names.add(name)
        records.append(
            TokenRecord(
                name=name,
                sha256=digest,
                created=_time(entry.get("created"), f"{where} created"),
                revoked=_time(entry.get("revoked"), f"{where} revoked"),
            )
        )
    return records


def format_tokens(records: list[TokenRecord]) -> str:
    def stamp(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    entries = [
        {"name": r.name, "sha256": r.sha256, "created": stamp(r.created), "revoked": stamp(r.revoked)}
        for r in records
    ]
    return json.dumps({"tokens": entries}, indent=2) + "\n"


def load_tokens(path: Path) -> list[TokenRecord]:
    """The file's records; none if it does not exist."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise TokenConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise TokenConfigError(f"{path} is over {MAX_FILE_BYTES:,} bytes; it is not a tokens file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenConfigError(f"{path} is not UTF-8 text") from None
    return parse_tokens(text, source=str(path))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write(path: Path, records: list[TokenRecord]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp creates it 0600
            handle.write(format_tokens(records))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_token(path: Path, name: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> str:
    """Store a new token's hash under `name` and return the token (its only appearance)."""
    check_name(name)
    with _locked(path):
        records = load_tokens(path)
        if any(record.name == name for record in records):
            raise TokenConfigError(f"a token named {name!r} exists in {path}; choose another name")
        token = new_token()
        records.append(TokenRecord(name=name, sha256=hash_token(token), created=now().replace(microsecond=0)))
        _write(path, records)
    return token


def revoke_token(
    path: Path, name: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> TokenRecord:
    """Mark `name` revoked (kept in the file, so the name stays taken and the log readable);
    returns the record as it is now (unchanged if it was revoked already)."""
    with _locked(path):
        records = load_tokens(path)
        for index, record in enumerate(records):
            if record.name == name:
                if record.revoked is None:
                    record = TokenRecord(
                        record.name, record.sha256, record.created, now().replace(microsecond=0)
                    )
                    records[index] = record
                    _write(path, records)
                return record
    known = ", ".join(r.name for r in records) or "none"
    raise TokenConfigError(f"no token named {name!r} in {path} (tokens: {known})")


class TokenWatcher:
    """The current token records: the file's (re-read when it changed) plus `fixed` ones."""

    def __init__(
        self,
        path: Path | None,
        fixed: list[TokenRecord] | None = None,
        *,
        check_interval: float = CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.fixed = list(fixed or [])
        self._interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._from_file: list[TokenRecord] = []
        self._checked_at = float("-inf")
        if path is not None:
            self._from_file = load_tokens(path)  # at start a broken file is an error, not a warning
            self._signature = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def records(self) -> list[TokenRecord]:
        if self.path is not None:
            with self._lock:
                now = self._clock()
                if now - self._checked_at >= self._interval:
                    self._checked_at = now
                    self._refresh()
        return [*self._from_file, *self.fixed]

    def _refresh(self) -> None:
        signature = self._stat()
        if signature == self._signature:
            return
        self._signature = signature
        try:
            self._from_file = load_tokens(self.path) if self.path is not None else []
        except TokenConfigError as exc:
            self._from_file = []
            log.error("ingest tokens file unusable; its tokens are refused until it is fixed: %s", exc)
            return
        log.info(
            "ingest tokens file reloaded",
            extra={"path": str(self.path), "active": sum(r.active for r in self._from_file)},
        )
