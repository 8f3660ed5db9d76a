"""Secret references: only env:NAME / file:/path, resolved at use, never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.delivery.secrets import SecretError, SecretRef, parse_secret_ref, resolve_secret


def test_parse() -> None:
    assert parse_secret_ref("env:HOOK_KEY") == SecretRef("env", "HOOK_KEY")
    assert parse_secret_ref(" file:/run/secrets/hook ") == SecretRef("file", "/run/secrets/hook")
    assert str(parse_secret_ref("env:X")) == "env:X"


@pytest.mark.parametrize(
    "ref", ["hunter2", "env:", "env:1BAD", "env:A-B", "file:", "file:rel/path", "vault:x"]
)
def test_parse_refuses(ref: str) -> None:
    with pytest.raises(SecretError) as info:
        parse_secret_ref(ref)
    assert "\n" not in str(info.value)
    assert "hunter2" not in str(info.value)  # a pasted secret is never echoed


def test_resolve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_KEY", "value-1")
    assert resolve_secret("env:HOOK_KEY") == "value-1"
    monkeypatch.setenv("HOOK_KEY", "")
    with pytest.raises(SecretError, match="HOOK_KEY is not set"):
        resolve_secret("env:HOOK_KEY")


def test_resolve_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("file-secret\n")
    assert resolve_secret(f"file:{path}") == "file-secret"
    path.write_text("\n")
    with pytest.raises(SecretError, match="empty"):
        resolve_secret(f"file:{path}")
    with pytest.raises(SecretError, match="cannot read") as info:
        resolve_secret(f"file:{tmp_path / 'missing'}")
    assert "\n" not in str(info.value)
