"""The model registry on PostgreSQL and SQLite: register (verified), promote, rollback, and
exactly one champion, also under concurrent promotions."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bert_core.artifacts import read_manifest, sha256_file
from services.learning.registry import (
    RegistryError,
    champion,
    get_version,
    list_versions,
    previous_champion,
    promote,
    register_model,
    reject,
    rollback,
)
from services.storage import (
    ModelVersionRow,
    session_factory,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def models(model_variant: Callable[..., Path]) -> list[Path]:
    """Four distinct model directories (versions and weights differ); do not modify them."""
    return [model_variant(seed=seed) for seed in range(1, 5)]


def version_of(path: Path) -> str:
    return read_manifest(path).version


def statuses(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {r.version: r.status for r in session.scalars(select(ModelVersionRow))}


def champions(engine: Engine) -> int:
    with Session(engine) as session:
        return int(
            session.scalar(
                select(func.count()).select_from(ModelVersionRow).where(ModelVersionRow.status == "champion")
            )
            or 0
        )


def register_all(engine: Engine, paths: list[Path]) -> list[str]:
    with session_factory(engine).begin() as session:
        return [register_model(session, p, now=T0).version for p in paths]


def test_register_records_the_manifest_hashes_and_metrics(engine: Engine, models: list[Path]) -> None:
    path = models[0]
    manifest = read_manifest(path)
    with session_factory(engine).begin() as session:
        row = register_model(session, path, note="from a test", now=T0)
    with Session(engine) as session:
        stored = get_version(session, manifest.version)
        assert stored is not None
        assert (stored.version, stored.parent, stored.data_hash) == (
            manifest.version,
            manifest.parent,
            manifest.data_hash,
        )
        assert stored.parent is not None  # a variant's parent is the session model
        assert stored.sha256 == sha256_file(path / "model.safetensors") == manifest.files["model.safetensors"]
        assert stored.path == str(path.resolve()) and Path(stored.path).is_absolute()
        assert stored.status == "candidate" and stored.status_changed_at == T0
        assert stored.created_at == datetime.fromisoformat(manifest.created)
        assert set(stored.metrics["dev"]) == {"sentiment", "topic"}
        assert stored.note == "2026-02-01T08:00:00+00:00 registered as candidate: from a test"
    assert row.version == manifest.version

    with session_factory(engine).begin() as session:  # the same directory again: the same row
        again = register_model(session, path, now=T0 + timedelta(hours=1))
        assert again.status_changed_at == T0
    copy = shutil.copytree(path, path.parent.parent / f"copy-{manifest.version}", dirs_exist_ok=True)
    with (
        session_factory(engine).begin() as session,
        pytest.raises(RegistryError, match="already registered at"),
    ):
        register_model(session, copy, now=T0)
    with Session(engine) as session:
        assert [r.version for r in list_versions(session)] == [manifest.version]


def test_damaged_or_foreign_directories_are_refused(
    engine: Engine, models: list[Path], tmp_path: Path
) -> None:
    damaged = Path(shutil.copytree(models[0], tmp_path / "damaged"))
    weights = damaged / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with session_factory(engine).begin() as session:
        with pytest.raises(RegistryError, match=r"model\.safetensors does not match its manifest hash"):
            register_model(session, damaged, now=T0)
        with pytest.raises(RegistryError, match="not a finsent model directory"):
            register_model(session, tmp_path, now=T0)
        with pytest.raises(RegistryError, match="no such model directory"):
            register_model(session, tmp_path / "missing", now=T0)
        with pytest.raises(RegistryError, match="cannot register with status 'champion'"):
            register_model(session, models[0], status="champion", now=T0)
    assert statuses(engine) == {}


def test_promote_and_rollback_keep_exactly_one_champion(engine: Engine, models: list[Path]) -> None:
    a, b, c = register_all(engine, models[:3])
    step = iter(range(1, 100))

    def at() -> datetime:
        return T0 + timedelta(minutes=next(step))

    with Session(engine) as session:
        assert champion(session) is None and previous_champion(session) is None
    for version in (a, b, c):
        with session_factory(engine).begin() as session:
            promote(session, version, by="alice", reason=f"test {version}", now=at())
        assert champions(engine) == 1
    assert statuses(engine) == {a: "retired", b: "retired", c: "champion"}
    with session_factory(engine).begin() as session:  # promoting the champion again: no change
        assert promote(session, c, by="bob", reason="again", now=at()).status == "champion"

    with session_factory(engine).begin() as session:
        assert rollback(session, by="carol", now=at(), reason="bad alerts").version == b
    assert statuses(engine) == {a: "retired", b: "champion", c: "rejected"}
    with session_factory(engine).begin() as session:
        assert rollback(session, by="carol", now=at()).version == a
    assert statuses(engine) == {a: "champion", b: "rejected", c: "rejected"}
    with (
        session_factory(engine).begin() as session,
        pytest.raises(RegistryError, match="no previous champion"),
    ):
        rollback(session, by="carol", now=at())
    assert champions(engine) == 1

    with Session(engine) as session:
        rolled_back = get_version(session, c)
        assert rolled_back is not None and rolled_back.note is not None
        history = rolled_back.note.splitlines()
        assert history[0].endswith("registered as candidate")
        assert history[1].endswith(f"champion: promoted by alice: test {c}")
        assert history[2].endswith(f"rejected: rolled back by carol to {b}: bad alerts")
        current = champion(session)
        assert current is not None and current.version == a
        assert current.note is not None and f"champion: rollback by carol from {b}: rollback" in current.note

    # A rejected version needs force; promoting it retires the champion, so rollback returns to a.
    with session_factory(engine).begin() as session, pytest.raises(RegistryError, match="was rejected"):
        promote(session, c, by="dave", reason="retry", now=at())
    with session_factory(engine).begin() as session:
        promote(session, c, by="dave", reason="retry", now=at(), force=True)
    assert statuses(engine) == {a: "retired", b: "rejected", c: "champion"}
    with session_factory(engine).begin() as session:
        assert rollback(session, by="erin", now=at()).version == a


def test_reject_and_unknown_versions(engine: Engine, models: list[Path]) -> None:
    a, b = register_all(engine, models[:2])
    with session_factory(engine).begin() as session:
        promote(session, a, by="x", reason="first", now=T0)
        reject(session, b, by="gate", reason="macro-F1 fell", now=T0)
    assert statuses(engine) == {a: "champion", b: "rejected"}
    with session_factory(engine).begin() as session:
        with pytest.raises(RegistryError, match="is the champion"):
            reject(session, a, by="gate", reason="x", now=T0)
        with pytest.raises(RegistryError, match="no model version 'nope'"):
            promote(session, "nope", by="x", reason="x", now=T0)


def test_promote_refuses_a_directory_damaged_after_registration(
    engine: Engine, models: list[Path], tmp_path: Path
) -> None:
    a = register_all(engine, [models[0]])[0]
    moved = Path(shutil.copytree(models[1], tmp_path / "b"))
    with session_factory(engine).begin() as session:
        promote(session, a, by="x", reason="first", now=T0)
        b = register_model(session, moved, now=T0).version
    (moved / "finsent.json").write_text("{}")
    with (
        session_factory(engine).begin() as session,
        pytest.raises(RegistryError, match=r"finsent\.json does not match"),
    ):
        promote(session, b, by="x", reason="second", now=T0 + timedelta(minutes=1))
    assert statuses(engine) == {a: "champion", b: "candidate"}


def test_concurrent_promotions_leave_exactly_one_champion(engine: Engine, models: list[Path]) -> None:
    versions = register_all(engine, models)
    with session_factory(engine).begin() as session:
        promote(session, versions[0], by="setup", reason="start", now=T0)
    factory = session_factory(engine)
    errors: list[BaseException] = []
    for round_ in range(4):
        targets = [v for v in versions if statuses(engine)[v] != "champion"][:3]
        barrier = threading.Barrier(len(targets))

        def run(version: str, minute: int) -> None:
            try:
                barrier.wait(timeout=30)
                with factory.begin() as session:
                    promote(
                        session,
                        version,
                        by="race",
                        reason="race",
                        now=T0 + timedelta(minutes=minute),
                        verify=False,
                    )
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(v, round_ * 10 + i + 1)) for i, v in enumerate(targets)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert champions(engine) == 1
        current = statuses(engine)
        assert sorted(current.values()).count("retired") == len(versions) - 1


def test_a_promotion_judged_against_a_replaced_champion_changes_nothing(
    engine: Engine, models: list[Path]
) -> None:
    a, b, c = register_all(engine, models[:3])
    with session_factory(engine).begin() as session:
        promote(session, a, by="ops", reason="start", now=T0)
    # A retraining compared its challenger (c) with a; meanwhile b was promoted by hand.
    with session_factory(engine).begin() as session:
        promote(session, b, by="ops", reason="hand-picked", now=T0 + timedelta(minutes=1))
    with (
        pytest.raises(RegistryError, match=f"the champion is now {b}, not {a}"),
        session_factory(engine).begin() as session,
    ):
        promote(
            session,
            c,
            by="retrain run 1",
            reason="passed the gate",
            now=T0 + timedelta(minutes=2),
            expected_champion=a,
        )
    assert statuses(engine) == {a: "retired", b: "champion", c: "candidate"}
    with pytest.raises(RegistryError, match="changed since"), session_factory(engine).begin() as session:
        rollback(session, by="ops", now=T0 + timedelta(minutes=3), expected_champion=a)
    assert statuses(engine) == {a: "retired", b: "champion", c: "candidate"}


def test_a_tampered_tokenizer_with_a_rehashed_manifest_is_refused_by_the_registry_and_the_worker(
    engine: Engine, models: list[Path], tmp_path: Path
) -> None:
    """verify_model_dir alone trusts the manifest: whoever can write the directory can change
    the tokenizer and re-hash the manifest. The registry pins the manifest's own hash."""
    import json

    from services.scorer.model_reload import ModelRef, ModelRefused, load_verified

    a = register_all(engine, [models[0]])[0]
    moved = Path(shutil.copytree(models[2], tmp_path / "c"))
    with session_factory(engine).begin() as session:
        promote(session, a, by="x", reason="first", now=T0)
        row = register_model(session, moved, now=T0)
        c, weights_sha, manifest_sha = row.version, row.sha256, row.manifest_sha256
    assert manifest_sha == sha256_file(moved / "manifest.json")

    tokenizer = moved / "tokenizer.json"
    data = json.loads(tokenizer.read_text(encoding="utf-8"))
    data["added_tokens"] = [*data.get("added_tokens", []), {"id": 99999, "content": "[EVIL]"}]
    tokenizer.write_text(json.dumps(data), encoding="utf-8")
    manifest_path = moved / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"]["tokenizer.json"] = sha256_file(tokenizer)  # re-hashed: self-consistent again
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    with (
        session_factory(engine).begin() as session,
        pytest.raises(RegistryError, match=r"manifest"),
    ):
        promote(session, c, by="x", reason="second", now=T0 + timedelta(minutes=1))
    assert statuses(engine)[c] == "candidate"

    loads: list[Path] = []
    with pytest.raises(ModelRefused, match=r"manifest"):
        load_verified(ModelRef(c, moved, weights_sha, manifest_sha), loads.append)  # type: ignore[arg-type]
    assert loads == []  # refused before anything was loaded
