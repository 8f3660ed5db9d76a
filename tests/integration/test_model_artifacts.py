"""Registered models stored in the database and fetched on hosts that lack their directory:
two FINSENT_HOMEs with no shared model folder both load the champion, a tampered chunk is
refused with nothing cached, a damaged cache is replaced."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from bert_core import Predictor
from bert_core.artifacts import read_manifest
from services.learning.artifact_store import ArtifactError, local_model_dir
from services.learning.registry import RegistryError, champion, promote, register_model
from services.storage import ModelArtifactChunkRow

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
CHUNK = 64 * 1024  # small, so the weights span many chunks
TEXTS = ["Shares of Acme plunge after profit warning", "Bank raises dividend"]


def registered_then_moved(engine: Engine, source: Path, where: Path) -> str:
    """Register a copy of `source`, then take the copy away: as seen from another host."""
    copy = where / "trainer-host-model"
    shutil.copytree(source, copy)
    with Session(engine) as session, session.begin():
        version = register_model(session, copy, now=T0, artifact_chunk_bytes=CHUNK).version
    shutil.rmtree(copy)
    return version


def resolve(engine: Engine, version: str, home: Path) -> Path:
    with Session(engine) as session:
        return local_model_dir(session, version, cache_dir=home / "models" / "cache")


def test_registration_stores_every_manifest_file_in_chunks(
    engine: Engine, saved_model_dir: Path, tmp_path: Path
) -> None:
    version = registered_then_moved(engine, saved_model_dir, tmp_path)
    manifest = read_manifest(saved_model_dir)
    with Session(engine) as session:
        names = set(
            session.scalars(
                select(ModelArtifactChunkRow.file_name).where(ModelArtifactChunkRow.version == version)
            )
        )
        weight_chunks = session.scalar(
            select(func.count())
            .select_from(ModelArtifactChunkRow)
            .where(ModelArtifactChunkRow.version == version)
            .where(ModelArtifactChunkRow.file_name == "model.safetensors")
        )
    assert names == {*manifest.files, "manifest.json"}
    size = (saved_model_dir / "model.safetensors").stat().st_size
    assert weight_chunks == size // CHUNK + 1


def test_two_hosts_without_the_model_folder_both_load_the_champion(
    engine: Engine, saved_model_dir: Path, tmp_path: Path
) -> None:
    version = registered_then_moved(engine, saved_model_dir, tmp_path)
    with Session(engine) as session, session.begin():
        promote(session, version, by="test", reason="two hosts", now=T0)
    with Session(engine) as session:
        row = champion(session)
        assert row is not None and row.version == version
        assert not Path(row.path).exists()
    expected = [(p.topic, p.sentiment) for p in Predictor.load(saved_model_dir).predict(TEXTS)]
    for host in ("host-a", "host-b"):
        home = tmp_path / host
        path = resolve(engine, version, home)
        assert path == home / "models" / "cache" / version
        served = Predictor.load(path).predict(TEXTS)
        assert [(p.topic, p.sentiment) for p in served] == expected
        assert not [p for p in path.parent.iterdir() if p.name != version]  # no partial dirs left


def test_a_verified_cache_is_reused_and_a_damaged_one_replaced(
    engine: Engine, saved_model_dir: Path, tmp_path: Path
) -> None:
    version = registered_then_moved(engine, saved_model_dir, tmp_path)
    home = tmp_path / "host"
    path = resolve(engine, version, home)
    marker = path / "left-by-this-host.txt"  # not in the manifest: survives only a reuse
    marker.write_text("x")
    assert resolve(engine, version, home) == path and marker.exists()  # reused, not fetched
    (path / "config.json").write_text("{}")  # damaged on this host
    assert resolve(engine, version, home) == path and not marker.exists()  # fetched again
    assert (path / "config.json").read_bytes() == (saved_model_dir / "config.json").read_bytes()


def test_the_registered_directory_is_used_where_it_exists(
    engine: Engine, saved_model_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(saved_model_dir, copy)
    with Session(engine) as session, session.begin():
        version = register_model(session, copy, now=T0, artifact_chunk_bytes=CHUNK).version
    assert resolve(engine, version, tmp_path / "host") == copy.resolve()
    assert not (tmp_path / "host" / "models" / "cache" / version).exists()


def test_a_tampered_chunk_is_refused_and_nothing_is_cached(
    engine: Engine, saved_model_dir: Path, tmp_path: Path
) -> None:
    version = registered_then_moved(engine, saved_model_dir, tmp_path)
    with Session(engine) as session, session.begin():
        data = session.scalar(
            select(ModelArtifactChunkRow.data).where(
                ModelArtifactChunkRow.version == version,
                ModelArtifactChunkRow.file_name == "model.safetensors",
                ModelArtifactChunkRow.chunk_index == 1,
            )
        )
        assert data is not None
        flipped = bytes([data[0] ^ 0xFF]) + bytes(data[1:])
        session.execute(
            update(ModelArtifactChunkRow)
            .where(
                ModelArtifactChunkRow.version == version,
                ModelArtifactChunkRow.file_name == "model.safetensors",
                ModelArtifactChunkRow.chunk_index == 1,
            )
            .values(data=flipped)
        )
    home = tmp_path / "host"
    with pytest.raises(ArtifactError, match=r"model\.safetensors fetched from the registry does not match"):
        resolve(engine, version, home)
    cache = home / "models" / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_tampered_manifest_is_refused(engine: Engine, saved_model_dir: Path, tmp_path: Path) -> None:
    version = registered_then_moved(engine, saved_model_dir, tmp_path)
    with Session(engine) as session, session.begin():
        session.execute(
            update(ModelArtifactChunkRow)
            .where(ModelArtifactChunkRow.version == version)
            .where(ModelArtifactChunkRow.file_name == "manifest.json")
            .values(data=b'{"version": "x"}')
        )
    with pytest.raises(ArtifactError, match="does not match its pinned hash"):
        resolve(engine, version, tmp_path / "host")
    assert not (tmp_path / "host" / "models" / "cache" / version).exists()


def test_a_model_with_a_pickle_is_not_registered(
    engine: Engine, model_variant: Callable[..., Path], tmp_path: Path
) -> None:
    from bert_core.manifest import MANIFEST_FILE

    source = model_variant(seed=7)
    copy = tmp_path / "model"
    shutil.copytree(source, copy)
    (copy / "extra.pkl").write_bytes(b"not really a pickle")
    # re-write the manifest so the directory still verifies, as a careless export would
    import json

    from bert_core.hashing import sha256_file

    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["files"]["extra.pkl"] = sha256_file(copy / "extra.pkl")
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with Session(engine) as session, session.begin(), pytest.raises(RegistryError, match="never pickles"):
        register_model(session, copy, now=T0, artifact_chunk_bytes=CHUNK)


def test_doctor_accepts_a_champion_this_host_will_fetch(
    engine: Engine, saved_model_dir: Path, tmp_path: Path
) -> None:
    from services.cli.doctor_checks import _champion_path, check_model
    from services.settings import Settings

    version = registered_then_moved(engine, saved_model_dir, tmp_path)
    with Session(engine) as session, session.begin():
        promote(session, version, by="test", reason="doctor", now=T0)
    settings = Settings(home=tmp_path / "host", model=None)
    url = engine.url.render_as_string(hide_password=False)
    before = check_model(settings, _champion_path(url, settings.model_cache_dir))
    assert before.ok and "not on this host yet" in before.detail
    resolve(engine, version, settings.home)
    after = check_model(settings, _champion_path(url, settings.model_cache_dir))
    assert after.ok and "every file matches its hash" in after.detail
    with Session(engine) as session, session.begin():  # a champion with no stored copy is still an error
        session.execute(ModelArtifactChunkRow.__table__.delete())
    shutil.rmtree(settings.model_cache_dir)
    assert not check_model(settings, _champion_path(url, settings.model_cache_dir)).ok


def test_a_stored_copy_larger_than_any_model_is_refused_before_writing(
    engine: Engine, saved_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.learning import artifact_store

    version = registered_then_moved(engine, saved_model_dir, tmp_path)
    monkeypatch.setattr(artifact_store, "MAX_MODEL_BYTES", 10_000)  # the tiny model is far bigger
    with pytest.raises(ArtifactError, match="more than a model may"):
        resolve(engine, version, tmp_path / "host")
    cache = tmp_path / "host" / "models" / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_fetch_removes_partial_folders_of_dead_fetches_only(
    engine: Engine, saved_model_dir: Path, tmp_path: Path
) -> None:
    import os

    version = registered_then_moved(engine, saved_model_dir, tmp_path)
    cache = tmp_path / "host" / "models" / "cache"
    dead, live = cache / f".{version}.dead.partial", cache / f".{version}.live.partial"
    for folder in (dead, live):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half")
    os.utime(dead, (0, 0))
    resolve(engine, version, tmp_path / "host")
    assert not dead.exists() and live.exists()


def test_a_registered_directory_damaged_on_this_host_is_replaced_by_the_registry_copy(
    engine: Engine, saved_model_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(saved_model_dir, copy)
    with Session(engine) as session, session.begin():
        version = register_model(session, copy, now=T0, artifact_chunk_bytes=CHUNK).version
    (copy / "config.json").write_text("{}")
    path = resolve(engine, version, tmp_path / "host")
    assert path == tmp_path / "host" / "models" / "cache" / version
    assert (path / "config.json").read_bytes() == (saved_model_dir / "config.json").read_bytes()


def test_a_champion_fetched_then_loaded_has_its_weights_hashed_by_the_fetch_only(
    engine: Engine, saved_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the worker does at start and on a hot reload: localize (fetch, verify against the
    registry), then load_verified and Predictor.load, which reuse that check. The weights are
    hashed while streamed from the database and once by the fetch's check, not again by the
    load; a cached copy that is reused is hashed once in all."""
    import bert_core.manifest
    from services.learning.serving import localize, registry_champion
    from services.scorer.model_reload import load_verified

    hashed: list[Path] = []
    real = bert_core.manifest.sha256_file

    def counting(path: Path) -> str:
        if path.name == "model.safetensors":
            hashed.append(path)
        return real(path)

    monkeypatch.setattr(bert_core.manifest, "sha256_file", counting)
    version = registered_then_moved(engine, saved_model_dir, tmp_path)
    with Session(engine) as session, session.begin():
        promote(session, version, by="test", reason="hash once", now=T0)
    sessions = lambda: Session(engine)  # noqa: E731
    cache = tmp_path / "host" / "models" / "cache"
    ref = registry_champion(sessions)
    assert ref is not None
    for _start in ("fetched", "cached"):
        hashed.clear()
        local = ref.localized(localize(sessions, ref, cache_dir=cache))
        predictor = load_verified(local, Predictor.load)
        assert len(hashed) == 1, hashed  # fetched: in the partial folder, before its rename
        assert local.path == cache / version
        assert predictor.predict(TEXTS)[0].model_version == version
