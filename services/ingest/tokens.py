"""Bearer tokens of `POST /news`: making, hashing and matching them (pure, no I/O).

A token is 256 bits from `secrets` (`fst_` + 43 URL-safe characters, the prefix so secret
scanners and people can tell what a leaked string is). Only its SHA-256 is stored. Not
bcrypt or argon2: those are slow on purpose because passwords are guessable; a 256-bit
random token is not, so a fast hash is as safe (inverting SHA-256 of 2^256 candidates is
out of reach) and keeps the per-request check to a microsecond instead of ~100 ms of
bcrypt per POST, which would itself be a denial-of-service lever. The presented token's
hash is compared with every known hash by `hmac.compare_digest`, with no early exit, so
the answer time says nothing about how close a guess came.

Token sources: the tokens file (token_file.py) and FINSENT_INGEST_TOKEN_HASHES
(`name:sha256hex,...`, for deployments that hand hashes in through a secret).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

TOKEN_PREFIX = "fst_"
TOKEN_BYTES = 32  # 256 bits
MAX_TOKEN_CHARS = 256  # longer Authorization values are refused unhashed
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class TokenConfigError(ValueError):
    """A token name, hash list or tokens file is unusable; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    name: str
    sha256: str  # hex digest of the token
    created: datetime | None = None
    revoked: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise TokenConfigError(
            f"token name {name!r} is not valid: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_hash_list(value: str) -> list[TokenRecord]:
    """FINSENT_INGEST_TOKEN_HASHES: comma-separated `name:sha256hex` entries; blank = none."""
    records: list[TokenRecord] = []
    seen: set[str] = set()
    for position, entry in enumerate((part.strip() for part in value.split(",")), start=1):
        if not entry:
            continue
        name, sep, digest = entry.partition(":")
        name, digest = name.strip(), digest.strip().lower()
        if not sep or not _HEX64.match(digest):
            raise TokenConfigError(
                f"entry {position} of FINSENT_INGEST_TOKEN_HASHES is not NAME:SHA256 (64 hex digits); "
                "`finsent tokens add NAME --hash-only` prints one"
            )
        check_name(name)
        if name in seen:
            raise TokenConfigError(f"FINSENT_INGEST_TOKEN_HASHES names {name!r} twice")
        seen.add(name)
        records.append(TokenRecord(name=name, sha256=digest))
    return records


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None if absent or malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS or " " in token:
        return None
    return token


def match_token(token: str | None, records: Iterable[TokenRecord]) -> str | None:
    """The name of the active record whose hash is the token's; None if there is none.

    Every record is compared (constant time each, no early exit); a revoked record never
    matches, even though its hash is compared like the others."""
    if token is None:
        return None
    presented = hash_token(token).encode("ascii")
    found: str | None = None
    for record in records:
        if hmac.compare_digest(presented, record.sha256.encode("ascii")) and record.active:
            found = record.name
    return found
