"""A model directory's manifest: the sha256 of every file, and the check against it.

Apart from artifacts.py (which needs torch and transformers to save and load a model), so
that verifying a directory (the registry, `finsent doctor`) costs a file hash, not the
multi-second import of the model libraries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from bert_core.errors import ModelIntegrityError
from bert_core.hashing import sha256_file

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "finsent.json"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"


@dataclass
class Manifest:
    version: str
    created: str
    data_hash: str
    parent: str | None
    files: dict[str, str]


def read_manifest(path: str | Path, *, sha256: str | None = None) -> Manifest:
    """The directory's manifest; with `sha256`, only if manifest.json hashes to it (read once,
    so the bytes checked are the bytes parsed)."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not path.is_dir():
        raise ModelIntegrityError(f"{path}: no such model directory")
    if not manifest_path.is_file():
        raise ModelIntegrityError(f"{path}: not a finsent model directory (no {MANIFEST_FILE})")
    raw = manifest_path.read_bytes()
    if sha256 is not None and (actual := hashlib.sha256(raw).hexdigest()) != sha256:
        raise ModelIntegrityError(
            f"{path}: {MANIFEST_FILE} does not match the registered manifest hash "
            f"(expected {sha256[:12]}…, got {actual[:12]}…); the model was modified after "
            "registration, refusing to load it"
        )
    try:
        return Manifest(**json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise ModelIntegrityError(f"{manifest_path}: unreadable manifest ({exc})") from None


def manifest_sha256(path: str | Path) -> str:
    """The sha256 of a model directory's manifest.json: what the registry pins, since the
    manifest hashes every other file."""
    return sha256_file(Path(path) / MANIFEST_FILE)


def verify_model_dir(path: str | Path, *, manifest_sha256: str | None = None) -> Manifest:
    """Check every file against the manifest, and the manifest against `manifest_sha256`
    when given (the registry's pin); raise on any missing or changed file."""
    path = Path(path)
    manifest = read_manifest(path, sha256=manifest_sha256)
    for required in (WEIGHTS_FILE, CONFIG_FILE, "config.json"):
        if required not in manifest.files:
            raise ModelIntegrityError(f"{path}: manifest does not list {required}")
    for name, expected in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise ModelIntegrityError(f"{path}: {name} is missing")
        actual = sha256_file(file)
        if actual != expected:
            raise ModelIntegrityError(
                f"{path}: {name} does not match its manifest hash "
                f"(expected {expected[:12]}…, got {actual[:12]}…); the model was modified or "
                "damaged, refusing to load it"
            )
    return manifest
