"""Extracting a model folder from a zip without trusting the zip.

What an archive may not do here: write outside the target folder (absolute names, `..`,
drive letters, backslash paths), expand beyond a byte budget (a zip bomb: sizes are counted
as the bytes come out, not read from the headers, which the archive itself states), or bring
pickle weights (`PICKLE_SUFFIXES`: loading them can run code). Only the model's folder
(`root`) is taken, and within it only the kinds of file a Hugging Face encoder is made of;
anything else (desktop.ini, …) is skipped. Symbolic links are never created: members are
written as plain files.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from bert_core.encoders.catalog import PICKLE_SUFFIXES
from bert_core.errors import ModelIntegrityError

# The files of a Hugging Face encoder folder: configs, tokenizer vocabularies, safetensors
# weights, the model card.
KEPT_SUFFIXES = (".json", ".txt", ".safetensors", ".md", ".model")
REQUIRED_FILES = ("config.json", "model.safetensors")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExtractedFile:
    name: str  # relative to the target folder, POSIX separators
    size: int
    sha256: str


def safe_member_name(name: str, root: str) -> str | None:
    """`name` relative to `root` if it is a safe path inside it; None for the root itself or a
    member outside it; ModelIntegrityError for a name that tries to leave the target."""
    if name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise ModelIntegrityError(
            f"archive member {name!r} has an absolute or Windows path; refusing the archive"
        )
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise ModelIntegrityError(
            f"archive member {name!r} climbs out of its folder (..); refusing the archive"
        )
    if not name.startswith(root):
        return None
    relative = name[len(root) :].strip("/")
    return relative or None


def extract_model(
    archive: Path, target: Path, *, root: str, max_bytes: int, progress: bool = True
) -> list[ExtractedFile]:
    """Extract the encoder folder `root` of `archive` into `target` (which must not exist yet)
    and return what was written, with each file's sha256. Raises ModelIntegrityError for an
    unsafe or pickle-bearing archive, one over `max_bytes` uncompressed, or one without a
    config.json and model.safetensors; `target` is then left incomplete for the caller to
    remove."""
    written: list[ExtractedFile] = []
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ModelIntegrityError(f"{archive}: not a zip archive ({exc})") from None
    with zf:
        members = []
        for info in zf.infolist():
            relative = safe_member_name(info.filename, root)
            if relative is None or info.is_dir():
                continue
            if relative.lower().endswith(PICKLE_SUFFIXES):
                raise ModelIntegrityError(
                    f"{archive}: {info.filename} holds pickle weights, which can run code when "
                    "loaded; finsent loads safetensors only, refusing the archive"
                )
            if relative.lower().endswith(KEPT_SUFFIXES):
                members.append((info, relative))
        declared = sum(info.file_size for info, _ in members)
        if declared > max_bytes:
            raise ModelIntegrityError(
                f"{archive}: {declared} bytes uncompressed, over the limit of {max_bytes}; refusing it"
            )
        target.mkdir(parents=True)
        total = 0
        with tqdm(total=declared, unit="B", unit_scale=True, desc="extracting", disable=not progress) as bar:
            for info, relative in members:
                dest = target / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                digest, size = hashlib.sha256(), 0
                with zf.open(info) as source, dest.open("xb") as sink:
                    for chunk in iter(lambda: source.read(_CHUNK), b""):
                        size += len(chunk)
                        total += len(chunk)
                        if size > info.file_size or total > max_bytes:
                            raise ModelIntegrityError(
                                f"{archive}: {info.filename} expands beyond its stated size or the "
                                f"limit of {max_bytes} bytes (a zip bomb?); refusing it"
                            )
                        digest.update(chunk)
                        sink.write(chunk)
                        bar.update(len(chunk))
                written.append(ExtractedFile(relative, size, digest.hexdigest()))
    names = {f.name for f in written}
    missing = [name for name in REQUIRED_FILES if name not in names]
    if missing:
        raise ModelIntegrityError(f"{archive}: no {', '.join(missing)} in {root!r}; not an encoder archive")
    return written
