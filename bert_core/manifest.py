"""A model directory's manifest: the sha256 of every file, and the check against it.

Apart from artifacts.py (which needs torch and transformers to save and load a model), so
that verifying a directory (the registry, `finsent doctor`) costs a file hash, not the
multi-second import of the model libraries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bert_core.errors import ModelIntegrityError
from bert_core.hashing import sha256_file

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "finsent.json"
MANIFEST_FILE = "manifest.json"


@dataclass
class Manifest:
    version: str
    created: str
    data_hash: str
    parent: str | None
    files: dict[str, str]


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not path.is_dir():
        raise ModelIntegrityError(f"{path}: no such model directory")
    if not manifest_path.is_file():
        raise ModelIntegrityError(f"{path}: not a finsent model directory (no {MANIFEST_FILE})")
    try:
        return Manifest(**json.loads(manifest_path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelIntegrityError(f"{manifest_path}: unreadable manifest ({exc})") from None


def verify_model_dir(path: str | Path) -> Manifest:
    """Check every file against the manifest; raise on any missing or changed file."""
    path = Path(path)
    manifest = read_manifest(path)
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
