"""A non-editable install carries the seed data: the wheel built from a clean copy of the
repository holds the CSVs with their licence notice and the teacher's soft targets, and
`packaged_seed_data()` / `packaged_soft_targets()` find them when the package is imported from
the unpacked wheel rather than from the source tree."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bert_core.seed_data import SEED_FILES, SOFT_TARGETS_FILE

SEED_PACKAGE = "bert_core/seed_data"
EXPECTED = {
    f"{SEED_PACKAGE}/{name}"
    for name in (*SEED_FILES.values(), SOFT_TARGETS_FILE, "README.md", "LICENSE", "__init__.py")
}


@pytest.fixture(scope="module")
def wheel(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation and no index: the venv's setuptools builds it, nothing is downloaded.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(source_tree),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = out.glob("finsent-*.whl")
    return built


def test_the_wheel_holds_the_seed_data_and_its_licence(wheel: Path, source_tree: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    assert {name for name in sizes if name.startswith(f"{SEED_PACKAGE}/")} == EXPECTED
    for name in EXPECTED:
        assert sizes[name] == (source_tree / name).stat().st_size, name


def test_an_unpacked_wheel_finds_its_own_seed_data(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    # -S: no site-packages, so neither the editable install of this checkout nor anything
    # else can supply bert_core; only the unpacked wheel (and the standard library) can.
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from bert_core.seed_data import packaged_seed_data, packaged_soft_targets; "
        "paths = {k: str(v) for k, v in packaged_seed_data().items()}; "
        "paths['soft_targets'] = str(packaged_soft_targets()); "
        "print(json.dumps(paths))"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script, str(site)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    paths = {task: Path(p) for task, p in json.loads(proc.stdout).items()}
    soft_targets = paths.pop("soft_targets")
    assert soft_targets == site / SEED_PACKAGE / SOFT_TARGETS_FILE
    assert soft_targets.read_bytes().startswith(b"PK")  # the .npz (a zip of arrays) itself
    assert set(paths) == {"sentiment", "topic"}
    for task, path in paths.items():
        assert path.parent == site / SEED_PACKAGE
        assert path.read_text(encoding="utf-8").startswith("text,label\n"), task
