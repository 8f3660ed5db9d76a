"""`--secret-ref`: where a webhook's HMAC key or an SMTP password lives, never the value.

The database and the repository hold only the reference (`env:NAME` or `file:/absolute/path`);
the dispatcher resolves it at send time, so rotating a secret needs no database change and a
database dump leaks nothing. Error messages name the reference, never the value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretError(ValueError):
    """A malformed reference, or one that does not resolve; the message is one line."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    kind: Literal["env", "file"]
    where: str  # the variable name or the absolute path

    def __str__(self) -> str:
        return f"{self.kind}:{self.where}"


def parse_secret_ref(ref: str) -> SecretRef:
    """`env:NAME` or `file:/absolute/path`; anything else (a pasted secret, say) is refused.

    A relative path is refused because it would resolve against whatever directory the
    dispatcher happens to start in.
    """
    kind, sep, where = ref.strip().partition(":")
    if sep and kind == "env" and _ENV_NAME.fullmatch(where):
        return SecretRef("env", where)
    if sep and kind == "file" and where and Path(where).is_absolute():
        return SecretRef("file", where)
    raise SecretError(
        "secret reference must be env:NAME or file:/absolute/path (the secret itself is never stored)"
    )


def resolve_secret(ref: str | SecretRef) -> str:
    """The secret's value (a file's trailing newline removed); `SecretError` if it is unset or empty."""
    parsed = ref if isinstance(ref, SecretRef) else parse_secret_ref(ref)
    if parsed.kind == "env":
        value = os.environ.get(parsed.where)
        if not value:
            raise SecretError(f"secret {parsed}: environment variable {parsed.where} is not set")
        return value
    try:
        value = Path(parsed.where).read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        raise SecretError(f"secret {parsed}: cannot read the file: {exc.strerror or exc}") from None
    if not value:
        raise SecretError(f"secret {parsed}: the file is empty")
    return value
