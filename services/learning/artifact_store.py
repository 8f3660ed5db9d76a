"""Model files in the database, so every host can serve a registered version.

The registry records where a model was registered (`model_versions.path`), which is a path
on one host. `store_artifact` copies the files the version's manifest lists, and the
manifest, into `model_artifacts` in chunks (bound parameters, the caller's transaction), when
the version is registered. `local_model_dir` is the one answer to "give me a local, verified
directory for version V": the registered path if it verifies here, else a cached copy under
FINSENT_HOME/models/cache/<version> if it verifies, else a fresh fetch from the database.
`verified_model_dir` answers the same with what was verified (`bert_core.VerifiedModelDir`),
so that a loader right after it does not hash the same files again.

The guarantee: a directory it returns matches the registry's pinned manifest hash and
weights hash, and every file matches the manifest. A fetch writes into a temporary sibling
directory, verifies it, then renames it into place, so a crash or a refused fetch leaves no
partial cache; a cache entry that no longer verifies is replaced. Only plain file names with
known safe suffixes are stored or written (safetensors, JSON, text): nothing fetched from
the database is ever unpickled, and a name cannot escape the cache directory.

Postgres only holds the bytes; an S3-compatible store is not supported yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from services.learning.registry import RegistryError
from services.storage.learning_models import ModelArtifactChunkRow, ModelVersionRow

if TYPE_CHECKING:  # bert_core's package imports torch; the registry must not
    from bert_core import Manifest, VerifiedModelDir

log = logging.getLogger(__name__)

MANIFEST_FILE: Final = "manifest.json"  # bert_core.manifest.MANIFEST_FILE
WEIGHTS_FILE: Final = "model.safetensors"  # bert_core.manifest.WEIGHTS_FILE
# What a model directory holds (weights, configs, tokenizer, metrics, card). Pickle formats
# (.bin, .pt, .pkl, …) are refused: whoever can write the database must not run code here.
SAFE_SUFFIXES: Final = frozenset({".safetensors", ".json", ".txt", ".md", ".model"})
# Bounds on what a fetch writes to disk, checked before any byte is: far above the largest
# encoder finsent trains (MPNet-base, ~440 MB) and the largest chunk size setting (64 MB), so
# only a damaged or hostile database reaches them.
MAX_MODEL_BYTES: Final = 8 * 1024**3
MAX_CHUNK_BYTES: Final = 64 * 1024**2
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class ArtifactError(RegistryError):
    """A model's files cannot be stored, fetched or verified; the message says which and why."""


def _check_name(version: str, name: str) -> None:
    if not _SAFE_NAME.fullmatch(name) or ".." in name or Path(name).suffix.lower() not in SAFE_SUFFIXES:
        raise ArtifactError(
            f"model {version}: file {name!r} cannot be stored in the registry: only plain names "
            f"ending in {', '.join(sorted(SAFE_SUFFIXES))} are (never pickles)"
        )


def _check_version(version: str) -> None:
    if not _SAFE_NAME.fullmatch(version) or ".." in version:
        raise ArtifactError(f"model version {version!r} cannot name a cache directory")


def has_artifact(session: Session, version: str) -> bool:
    return bool(
        session.scalar(
            select(func.count())
            .select_from(ModelArtifactChunkRow)
            .where(ModelArtifactChunkRow.version == version, ModelArtifactChunkRow.file_name == MANIFEST_FILE)
        )
    )


def store_artifact(
    session: Session, version: str, model_dir: Path, files: Iterable[str], *, chunk_bytes: int
) -> int:
    """Copy the manifest and `files` (the ones it lists) of a verified directory into the
    database, `chunk_bytes` at a time; returns the bytes stored. One INSERT per chunk, so
    memory holds one chunk, not the model."""
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    names = sorted({MANIFEST_FILE, *files})
    for name in names:
        _check_name(version, name)
    total = 0
    for name in names:
        with (model_dir / name).open("rb") as handle:
            index = 0
            while True:
                data = handle.read(chunk_bytes)
                if not data and index > 0:
                    break
                session.execute(
                    insert(ModelArtifactChunkRow),
                    [{"version": version, "file_name": name, "chunk_index": index, "data": data}],
                )
                total += len(data)
                index += 1
                if len(data) < chunk_bytes:
                    break
    return total


def _stream_file(session: Session, version: str, name: str, write: Callable[[bytes], object]) -> str:
    """Pass the file's chunks in order to `write`, one chunk in memory at a time; return the
    sha256 of the whole."""
    indexes = list(
        session.scalars(
            select(ModelArtifactChunkRow.chunk_index)
            .where(ModelArtifactChunkRow.version == version, ModelArtifactChunkRow.file_name == name)
            .order_by(ModelArtifactChunkRow.chunk_index)
        )
    )
    if not indexes:
        raise ArtifactError(f"model {version}: the registry holds no {name}; register the version again")
    if indexes != list(range(len(indexes))):
        raise ArtifactError(f"model {version}: chunks of {name} are missing in the registry")
    digest = hashlib.sha256()
    for index in indexes:
        data = session.scalar(
            select(ModelArtifactChunkRow.data).where(
                ModelArtifactChunkRow.version == version,
                ModelArtifactChunkRow.file_name == name,
                ModelArtifactChunkRow.chunk_index == index,
            )
        )
        chunk = bytes(data or b"")
        digest.update(chunk)
        write(chunk)
    return digest.hexdigest()


def _check_stored_size(session: Session, version: str) -> None:
    total, largest = session.execute(
        select(
            func.coalesce(func.sum(func.length(ModelArtifactChunkRow.data)), 0),
            func.coalesce(func.max(func.length(ModelArtifactChunkRow.data)), 0),
        ).where(ModelArtifactChunkRow.version == version)
    ).one()
    if int(total) > MAX_MODEL_BYTES or int(largest) > MAX_CHUNK_BYTES:
        raise ArtifactError(
            f"model {version}: the registry's copy holds {int(total)} bytes (largest chunk {int(largest)}), "
            f"more than a model may ({MAX_MODEL_BYTES} bytes, chunks of {MAX_CHUNK_BYTES}); refusing it"
        )


def _stored_manifest(session: Session, row: ModelVersionRow) -> tuple[bytes, Manifest]:
    """The stored manifest, checked against the registry's pin and its weights hash."""
    from bert_core import Manifest

    _check_stored_size(session, row.version)
    parts: list[bytes] = []
    actual = _stream_file(session, row.version, MANIFEST_FILE, parts.append)
    raw = b"".join(parts)
    if row.manifest_sha256 is not None and actual != row.manifest_sha256:
        raise ArtifactError(
            f"model {row.version}: the manifest stored in the registry does not match its pinned hash "
            f"(expected {row.manifest_sha256[:12]}…, got {actual[:12]}…); refusing it"
        )
    try:
        manifest = Manifest(**json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"model {row.version}: unreadable manifest in the registry ({exc})") from None
    if manifest.version != row.version or manifest.files.get(WEIGHTS_FILE) != row.sha256:
        raise ArtifactError(
            f"model {row.version}: the stored manifest names another version or other weights than the "
            "registered ones; refusing it"
        )
    return raw, manifest


def _check_stored_file(row: ModelVersionRow, name: str, expected: str, got: str) -> None:
    if got != expected:
        raise ArtifactError(
            f"model {row.version}: {name} fetched from the registry does not match its manifest hash "
            f"(expected {expected[:12]}…, got {got[:12]}…); the stored copy is damaged or was tampered "
            "with, refusing it"
        )


def verify_stored(session: Session, row: ModelVersionRow) -> None:
    """Check the database copy of `row` without writing it anywhere (what a promotion on a
    host without the model directory checks before announcing it)."""
    _, manifest = _stored_manifest(session, row)
    for name, expected in sorted(manifest.files.items()):
        _check_name(row.version, name)
        _check_stored_file(row, name, expected, _stream_file(session, row.version, name, lambda _: None))


def verify_against_registry(path: Path, row: ModelVersionRow) -> VerifiedModelDir:
    """Every file against the manifest, the manifest against the registry's pin, the weights
    against the registered sha256, and the version; `ArtifactError` on any difference."""
    from bert_core import ModelIntegrityError, check_model_dir

    try:
        verified = check_model_dir(path, manifest_sha256=row.manifest_sha256)
    except ModelIntegrityError as exc:
        raise ArtifactError(str(exc)) from None
    manifest = verified.manifest
    if manifest.version != row.version:
        raise ArtifactError(f"{path} holds model {manifest.version}, not {row.version}")
    if manifest.files.get(WEIGHTS_FILE) != row.sha256:
        raise ArtifactError(
            f"{path}: its weights are not the ones registered for {row.version}; refusing them"
        )
    return verified


def fetch_artifact(session: Session, row: ModelVersionRow, target: Path) -> VerifiedModelDir:
    """Fetch `row`'s files from the database into `target` (which must not exist), verified;
    a refused fetch leaves nothing behind."""
    version = row.version
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".partial", dir=target.parent))
    try:
        raw, manifest = _stored_manifest(session, row)
        for name, expected in sorted(manifest.files.items()):
            _check_name(version, name)
            with (tmp / name).open("wb") as handle:
                got = _stream_file(session, version, name, handle.write)
            _check_stored_file(row, name, expected, got)
        (tmp / MANIFEST_FILE).write_bytes(raw)
        verified = verify_against_registry(tmp, row)
        try:
            os.rename(tmp, target)  # the files keep their stamps: only their folder is renamed
            verified = replace(verified, path=target)
        except OSError:
            # another process on this host fetched it first: use theirs if it verifies
            verified = verify_against_registry(target, row)
            shutil.rmtree(tmp, ignore_errors=True)
        return verified
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


ABANDONED_AFTER_SECONDS: Final = 3600.0  # a fetch takes seconds; older partial folders are dead


def _remove_abandoned(cache_dir: Path, version: str) -> None:
    """Partial folders of fetches whose process died (a live fetch's folder is recent)."""
    if not cache_dir.is_dir():
        return
    cutoff = time.time() - ABANDONED_AFTER_SECONDS
    for leftover in cache_dir.glob(f".{version}.*"):
        try:
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


def local_model_dir(session: Session, version: str, *, cache_dir: Path) -> Path:
    """A local directory holding `version`, verified against the registry (see the module
    docstring); `ArtifactError` when there is none and the registry's copy is refused."""
    return verified_model_dir(session, version, cache_dir=cache_dir).path


def verified_model_dir(session: Session, version: str, *, cache_dir: Path) -> VerifiedModelDir:
    """`local_model_dir`, with what was verified there (to hand on to the loader)."""
    row = session.get(ModelVersionRow, version)
    if row is None:
        raise ArtifactError(f"no model version {version!r} in the registry (see `finsent models list`)")
    _check_version(version)
    registered = Path(row.path)
    if registered.is_dir():
        try:
            return verify_against_registry(registered, row)
        except ArtifactError as exc:
            log.warning(
                "model %s: the registered directory does not verify here (%s); using the registry's copy",
                version,
                exc,
            )
    cached = cache_dir / version
    if cached.is_dir():
        try:
            return verify_against_registry(cached, row)
        except ArtifactError as exc:
            log.warning("model %s: cached copy refused (%s); fetching it again", version, exc)
            stale = cached.with_name(f".{version}.stale-{os.getpid()}-{time.monotonic_ns()}")
            os.rename(cached, stale)
            shutil.rmtree(stale, ignore_errors=True)
    _remove_abandoned(cache_dir, version)
    started = time.perf_counter()
    verified = fetch_artifact(session, row, cached)
    log.info(
        "model %s: fetched from the registry into %s in %.1f s",
        version,
        verified.path,
        time.perf_counter() - started,
    )
    return verified
