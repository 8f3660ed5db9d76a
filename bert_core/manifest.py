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
    return _read_manifest(Path(path), sha256=sha256)[0]


def _read_manifest(path: Path, *, sha256: str | None) -> tuple[Manifest, str]:
    """The manifest and the sha256 of the bytes it was parsed from."""
    manifest_path = path / MANIFEST_FILE
    if not path.is_dir():
        raise ModelIntegrityError(f"{path}: no such model directory")
    if not manifest_path.is_file():
        raise ModelIntegrityError(f"{path}: not a finsent model directory (no {MANIFEST_FILE})")
    raw = manifest_path.read_bytes()
    actual = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and actual != sha256:
        raise ModelIntegrityError(
            f"{path}: {MANIFEST_FILE} does not match the registered manifest hash "
            f"(expected {sha256[:12]}…, got {actual[:12]}…); the model was modified after "
            "registration, refusing to load it"
        )
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"{manifest_path}: unreadable manifest ({exc})") from None
    return _manifest_from(data, manifest_path), actual


def _manifest_from(data: object, manifest_path: Path) -> Manifest:
    """The `Manifest` a parsed manifest.json holds; `ModelIntegrityError` naming the keys
    that are missing, unknown or of the wrong type, never a TypeError from the dataclass."""
    if not isinstance(data, dict):
        raise ModelIntegrityError(
            f"{manifest_path}: not a finsent manifest (a JSON object expected, got {type(data).__name__})"
        )
    fields = list(Manifest.__dataclass_fields__)
    problems = []
    missing = [name for name in fields if name not in data]
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    unknown = [str(name) for name in data if name not in fields]
    if unknown:
        problems.append(f"unknown keys: {', '.join(unknown)}")
    wrong = [
        name
        for name, ok in (
            ("version", isinstance(data.get("version", ""), str)),
            ("created", isinstance(data.get("created", ""), str)),
            ("data_hash", isinstance(data.get("data_hash", ""), str)),
            ("parent", isinstance(data.get("parent"), str | None)),
            (
                "files",
                isinstance(data.get("files", {}), dict)
                and all(isinstance(v, str) for v in data.get("files", {}).values()),
            ),
        )
        if not ok
    ]
    if wrong:
        problems.append(f"wrong type: {', '.join(wrong)}")
    if problems:
        raise ModelIntegrityError(f"{manifest_path}: not a finsent manifest ({'; '.join(problems)})")
    return Manifest(**data)


def manifest_sha256(path: str | Path) -> str:
    """The sha256 of a model directory's manifest.json: what the registry pins, since the
    manifest hashes every other file."""
    return sha256_file(Path(path) / MANIFEST_FILE)


def verify_model_dir(path: str | Path, *, manifest_sha256: str | None = None) -> Manifest:
    """Check every file against the manifest, and the manifest against `manifest_sha256`
    when given (the registry's pin); raise on any missing or changed file."""
    return check_model_dir(path, manifest_sha256=manifest_sha256).manifest


# What a file looked like when it was hashed: (name, inode, size, mtime_ns, ctime_ns). The
# ctime moves on every write, rename or `touch`, and no user can set it back.
FileStamp = tuple[str, int, int, int, int]


def _stamp(path: Path, name: str) -> FileStamp:
    st = (path / name).stat()
    return (name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class VerifiedModelDir:
    """A model directory whose every file was hashed against its manifest, with each file's
    stamp taken before it was hashed. Hashing the weights costs seconds; whoever verified a
    directory hands this on, so that the loader checks the stamps (a `stat` per file) instead
    of hashing the same bytes again. A file changed since, however it was changed, has
    another stamp and sends `recheck` back to hashing, which refuses it."""

    path: Path
    manifest: Manifest
    manifest_sha256: str  # of the manifest.json whose bytes were checked and parsed
    stamps: tuple[FileStamp, ...]

    def unchanged(self) -> bool:
        try:
            return tuple(_stamp(self.path, name) for name, *_ in self.stamps) == self.stamps
        except OSError:
            return False

    def recheck(self) -> Manifest:
        """The manifest, if no file changed since it was verified; else verify it again
        (against the same manifest hash), raising `ModelIntegrityError` on any difference."""
        if self.unchanged():
            return self.manifest
        return check_model_dir(self.path, manifest_sha256=self.manifest_sha256).manifest


def check_model_dir(path: str | Path, *, manifest_sha256: str | None = None) -> VerifiedModelDir:
    """`verify_model_dir`, returning what was verified, so the next reader need not hash it again."""
    path = Path(path)
    try:
        manifest_stamp = _stamp(path, MANIFEST_FILE)
    except OSError:
        read_manifest(path)  # says what is missing
        raise ModelIntegrityError(f"{path}: {MANIFEST_FILE} cannot be read") from None
    manifest, raw_sha = _read_manifest(path, sha256=manifest_sha256)
    for required in (WEIGHTS_FILE, CONFIG_FILE, "config.json"):
        if required not in manifest.files:
            raise ModelIntegrityError(f"{path}: manifest does not list {required}")
    stamps: list[FileStamp] = [manifest_stamp]
    for name, expected in manifest.files.items():
        file = path / name
        if not file.is_file():
            raise ModelIntegrityError(f"{path}: {name} is missing")
        stamps.append(_stamp(path, name))
        actual = sha256_file(file)
        if actual != expected:
            raise ModelIntegrityError(
                f"{path}: {name} does not match its manifest hash "
                f"(expected {expected[:12]}…, got {actual[:12]}…); the model was modified or "
                "damaged, refusing to load it"
            )
    return VerifiedModelDir(path, manifest, raw_sha, tuple(stamps))
