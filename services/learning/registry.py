"""The model registry: every model version, its lineage and evidence, and which one serves.

Statuses:

- `candidate` — registered, not (yet) judged: a retrain's challenger, or a model registered
  by hand;
- `champion` — the one model the workers serve; there is at most one;
- `retired` — was champion, replaced by a promotion: a rollback target;
- `rejected` — refused by the gate, or rolled back (a rolled-back model is judged bad, so a
  second rollback goes one step further back instead of returning to it). Promoting a
  rejected version needs `force`.

Rollback promotes the most recently retired version (by `status_changed_at`): A → B → C,
rollback gives B (C rejected), rollback again gives A (B rejected).

Every status change appends a line to `note` (when, what, who, why), so the note is the
version's audit trail. Promotion and rollback lock the registry rows first (`FOR UPDATE`
on PostgreSQL; SQLite serialises writers itself), so two concurrent promotions cannot
leave two champions. All functions work in the caller's transaction; the caller commits.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.storage.learning_models import ModelVersionRow

STATUSES: Final[tuple[str, ...]] = ("candidate", "champion", "retired", "rejected")
REGISTER_STATUSES: Final[tuple[str, ...]] = ("candidate", "rejected", "retired")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message says why and what to do."""


def _stamp(now: datetime, text: str) -> str:
    return f"{now.astimezone(UTC).isoformat(timespec='seconds')} {text}"


def _append_note(row: ModelVersionRow, line: str) -> None:
    row.note = f"{row.note}\n{line}" if row.note else line


def _verify(path: str | Path, sha256: str | None = None, manifest_sha256: str | None = None) -> Any:
    """Verify a model directory against its manifest, and against the registered weights and
    manifest hashes: the manifest alone proves nothing, whoever can change a file can re-hash it."""
    from bert_core import WEIGHTS_FILE, ModelIntegrityError, verify_model_dir

    try:
        manifest = verify_model_dir(path, manifest_sha256=manifest_sha256)
    except ModelIntegrityError as exc:
        raise RegistryError(str(exc)) from None
    if sha256 is not None and manifest.files.get(WEIGHTS_FILE) != sha256:
        raise RegistryError(
            f"{path}: its weights are not the ones registered (sha256 {sha256[:12]}…); refusing it"
        )
    return manifest


def _verify_row(session: Session, row: ModelVersionRow) -> None:
    """The registered directory where this host has it, else the registry's database copy:
    a promotion can be made from any host, and is never announced for damaged files."""
    from services.learning.artifact_store import has_artifact, verify_stored

    if not Path(row.path).is_dir() and has_artifact(session, row.version):
        verify_stored(session, row)
        return
    _verify(row.path, row.sha256, row.manifest_sha256)


def register_model(
    session: Session,
    model_dir: str | Path,
    *,
    status: str = "candidate",
    note: str | None = None,
    now: datetime,
    artifact_chunk_bytes: int | None = None,
) -> ModelVersionRow:
    """Add a verified model directory to the registry, from its manifest and metrics.json.

    Registering the same version again from the same directory with the same weights returns
    the existing row unchanged; any other clash is a `RegistryError`. A champion is made
    with `promote`, never here, so the one-champion rule has a single gatekeeper.

    The directory's files are stored in the database too (services.learning.artifact_store),
    in the same transaction, so hosts without this directory can serve the version;
    registering a version again stores them if an older registration did not.
    `artifact_chunk_bytes`: chunk size; None = FINSENT_MODEL_ARTIFACT_CHUNK_MB.
    """
    from bert_core import MANIFEST_FILE, METRICS_FILE, WEIGHTS_FILE, manifest_sha256
    from services.learning.artifact_store import has_artifact, store_artifact

    if status not in REGISTER_STATUSES:
        raise RegistryError(
            f"cannot register with status {status!r}: use one of {', '.join(REGISTER_STATUSES)} "
            "(promote makes a champion)"
        )
    path = Path(model_dir).expanduser().resolve()
    pinned_manifest = manifest_sha256(path) if (path / MANIFEST_FILE).is_file() else None
    manifest = _verify(path, manifest_sha256=pinned_manifest)  # the bytes hashed are the ones verified
    sha256 = manifest.files[WEIGHTS_FILE]
    existing = session.get(ModelVersionRow, manifest.version)
    if existing is not None:
        if existing.sha256 == sha256 and existing.path == str(path):
            if not has_artifact(session, existing.version):
                store_artifact(
                    session,
                    existing.version,
                    path,
                    manifest.files,
                    chunk_bytes=_chunk_bytes(artifact_chunk_bytes),
                )
            return existing
        if existing.sha256 != sha256:
            raise RegistryError(
                f"version {manifest.version} is already registered with other weights "
                f"(sha256 {existing.sha256[:12]}…, at {existing.path}); refusing {path}"
            )
        raise RegistryError(
            f"version {manifest.version} is already registered at {existing.path}; "
            f"refusing a second copy at {path}"
        )
    metrics_path = path / METRICS_FILE
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    except ValueError as exc:
        raise RegistryError(f"{metrics_path}: unreadable metrics ({exc})") from None
    try:
        created = datetime.fromisoformat(manifest.created)
        created = created if created.tzinfo else created.replace(tzinfo=UTC)
    except (TypeError, ValueError):
        created = now
    line = _stamp(now, f"registered as {status}" + (f": {note}" if note else ""))
    row = ModelVersionRow(
        version=manifest.version,
        parent=manifest.parent,
        created_at=created,
        data_hash=manifest.data_hash,
        metrics=metrics if isinstance(metrics, dict) else {"metrics": metrics},
        sha256=sha256,
        manifest_sha256=pinned_manifest,
        path=str(path),
        status=status,
        status_changed_at=now,
        note=line,
    )
    session.add(row)
    session.flush()
    store_artifact(session, row.version, path, manifest.files, chunk_bytes=_chunk_bytes(artifact_chunk_bytes))
    return row


def _chunk_bytes(given: int | None) -> int:
    if given is not None:
        return given
    from services.settings import get_settings

    return get_settings().inference.model_artifact_chunk_mb * 1024 * 1024


def get_version(session: Session, version: str) -> ModelVersionRow | None:
    return session.get(ModelVersionRow, version)


def champion(session: Session) -> ModelVersionRow | None:
    """The version the workers should serve, or None before the first promotion."""
    rows = session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.status == "champion")
        .order_by(ModelVersionRow.status_changed_at.desc())
    ).all()
    return rows[0] if rows else None


def list_versions(
    session: Session, *, status: str | None = None, limit: int | None = None
) -> list[ModelVersionRow]:
    """Newest first (by creation time of the model)."""
    stmt = select(ModelVersionRow).order_by(ModelVersionRow.created_at.desc(), ModelVersionRow.version.desc())
    if status is not None:
        stmt = stmt.where(ModelVersionRow.status == status)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def _lock_registry(session: Session) -> None:
    """Serialise status changes. Locking only the champion row would not do on PostgreSQL: a
    waiting promotion re-checks that row after the first commits, finds it retired, and sees
    no champion, so it locks every row (a registry has hundreds, not millions)."""
    if session.get_bind().dialect.name == "sqlite":
        # pysqlite begins a transaction only at the first write, and an UPDATE takes SQLite's
        # write lock even when it matches no row: from here on, reads see the latest commit.
        session.execute(
            update(ModelVersionRow)
            .where(ModelVersionRow.version == "")
            .values(status=ModelVersionRow.status)
            .execution_options(synchronize_session=False)
        )
        return
    session.execute(select(ModelVersionRow.version).order_by(ModelVersionRow.version).with_for_update()).all()


def _fresh(session: Session, version: str) -> ModelVersionRow | None:
    return session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.version == version)
        .execution_options(populate_existing=True)
    ).first()


def _current_champions(session: Session) -> list[ModelVersionRow]:
    return list(
        session.scalars(
            select(ModelVersionRow)
            .where(ModelVersionRow.status == "champion")
            .execution_options(populate_existing=True)
        )
    )


def _make_champion(
    session: Session, target: ModelVersionRow, *, line: str, retire_as: str, retire_line: str, now: datetime
) -> None:
    for old in _current_champions(session):
        if old.version == target.version:
            continue
        old.status = retire_as
        old.status_changed_at = now
        _append_note(old, retire_line)
    target.status = "champion"
    target.status_changed_at = now
    _append_note(target, line)
    session.flush()


def _check_champion(session: Session, expected: str) -> None:
    current = [c.version for c in _current_champions(session)]
    if current != [expected]:
        raise RegistryError(
            f"the champion is now {', '.join(current) or 'none'}, not {expected}: it changed "
            "since this decision was made; check `finsent models list` and try again"
        )


def promote(
    session: Session,
    version: str,
    *,
    by: str,
    reason: str,
    now: datetime,
    force: bool = False,
    verify: bool = True,
    expected_champion: str | None = None,
) -> ModelVersionRow:
    """Make `version` the champion; the previous champion becomes `retired` (a rollback
    target). Promoting the champion again changes nothing. A rejected version needs `force`.
    `verify` re-checks the directory first, so a model that was moved or damaged since it
    was registered is never announced to the workers. `expected_champion`: the champion the
    decision was made against (a retraining's gate compared with it); if it is no longer the
    champion, nothing changes and a `RegistryError` says so."""
    _lock_registry(session)
    if expected_champion is not None:
        _check_champion(session, expected_champion)
    target = _fresh(session, version)
    if target is None:
        raise RegistryError(f"no model version {version!r} (see `finsent models list`)")
    if target.status == "champion":
        return target
    if target.status == "rejected" and not force:
        last = (target.note or "").splitlines()[-1:] or [""]
        raise RegistryError(
            f"version {version} was rejected ({last[0]}); promote it with force (--force) if you are sure"
        )
    if verify:
        _verify_row(session, target)
    _make_champion(
        session,
        target,
        line=_stamp(now, f"champion: promoted by {by}: {reason}"),
        retire_as="retired",
        retire_line=_stamp(now, f"retired: {version} promoted by {by}"),
        now=now,
    )
    return target


def previous_champion(session: Session) -> ModelVersionRow | None:
    """What `rollback` would bring back: the most recently retired version."""
    return session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.status == "retired")
        .order_by(ModelVersionRow.status_changed_at.desc(), ModelVersionRow.version.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    ).first()


def rollback(
    session: Session,
    *,
    by: str,
    now: datetime,
    reason: str = "rollback",
    verify: bool = True,
    expected_champion: str | None = None,
) -> ModelVersionRow:
    """Bring back the previous champion (the most recently retired version); the current
    champion becomes `rejected`, so rolling back twice goes two steps back.

    `expected_champion`: the champion the caller showed to whoever confirmed the rollback;
    if another promotion happened since, nothing changes (a `RegistryError` says so), so a
    confirmation never rejects a model its author did not see."""
    _lock_registry(session)
    if expected_champion is not None:
        _check_champion(session, expected_champion)
    previous = previous_champion(session)
    if previous is None:
        raise RegistryError("no previous champion to roll back to (no version is retired)")
    if verify:
        _verify_row(session, previous)
    current = _current_champions(session)
    was = ", ".join(c.version for c in current) or "none"
    _make_champion(
        session,
        previous,
        line=_stamp(now, f"champion: rollback by {by} from {was}: {reason}"),
        retire_as="rejected",
        retire_line=_stamp(now, f"rejected: rolled back by {by} to {previous.version}: {reason}"),
        now=now,
    )
    return previous


def reject(session: Session, version: str, *, by: str, reason: str, now: datetime) -> ModelVersionRow:
    """Mark a candidate (or a retired version) rejected, e.g. after the gate said no."""
    _lock_registry(session)
    row = _fresh(session, version)
    if row is None:
        raise RegistryError(f"no model version {version!r} (see `finsent models list`)")
    if row.status == "champion":
        raise RegistryError(f"version {version} is the champion; roll back or promote another first")
    if row.status != "rejected":
        row.status = "rejected"
        row.status_changed_at = now
        _append_note(row, _stamp(now, f"rejected by {by}: {reason}"))
        session.flush()
    return row
