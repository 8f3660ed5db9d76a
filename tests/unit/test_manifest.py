"""`bert_core.manifest`: a manifest.json that is not a finsent manifest is one
`ModelIntegrityError` naming what is wrong, never a TypeError from the dataclass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bert_core import ModelIntegrityError, check_model_dir, verify_model_dir
from bert_core.manifest import MANIFEST_FILE, read_manifest

GOOD = {"version": "v1", "created": "2024-01-01T00:00:00", "data_hash": "d", "parent": None, "files": {}}


def _model_dir(tmp_path: Path, manifest: object) -> Path:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    return tmp_path


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ({"version": "v1"}, "missing keys: created, data_hash, parent, files"),
        ({**GOOD, "weights": "x"}, "unknown keys: weights"),
        ({**GOOD, "files": ["model.safetensors"]}, "wrong type: files"),
        ({**GOOD, "files": {"model.safetensors": 1}, "parent": 3}, "wrong type: parent, files"),
        ({"files": {}, "extra": 1}, "missing keys: version, created, data_hash, parent; unknown keys: extra"),
        (["v1"], "a JSON object expected, got list"),
    ],
)
def test_a_manifest_with_the_wrong_keys_names_them(tmp_path: Path, manifest: object, problem: str) -> None:
    path = _model_dir(tmp_path, manifest)
    for read in (read_manifest, verify_model_dir, check_model_dir):
        with pytest.raises(ModelIntegrityError) as caught:
            read(path)
        assert str(caught.value) == f"{path / MANIFEST_FILE}: not a finsent manifest ({problem})"


def test_a_well_formed_manifest_is_read(tmp_path: Path) -> None:
    manifest = read_manifest(_model_dir(tmp_path, GOOD))
    assert (manifest.version, manifest.parent, manifest.files) == ("v1", None, {})
