"""Hot reload parts on the tiny model: the slot, verified loading, the watcher's reconcile."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bert_core import Predictor
from bert_core.artifacts import read_manifest
from services.scorer.model_reload import ModelRef, ModelRefused, ModelSlot, ModelWatcher, load_verified


def ref_of(path: Path) -> ModelRef:
    manifest = read_manifest(path)
    return ModelRef(manifest.version, path, manifest.files["model.safetensors"])


def load(path: Path) -> Predictor:
    return Predictor.load(path)


def test_slot_swaps_whole_predictors() -> None:
    first, second = object(), object()
    slot = ModelSlot(first, "v1")  # type: ignore[arg-type]
    assert slot.current is first and slot.version == "v1"
    assert slot.swap(second, "v2") == "v1"  # type: ignore[arg-type]
    assert slot.current is second and slot.version == "v2"


def test_load_verified_serves_the_registered_model(saved_model_dir: Path) -> None:
    predictor = load_verified(ref_of(saved_model_dir), load)
    assert predictor.predict(["oil prices plunge"])[0].model_version == ref_of(saved_model_dir).version


def test_damaged_weights_are_refused(saved_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(saved_model_dir, copy)
    ref = ref_of(copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelRefused, match="does not match its manifest hash"):
        load_verified(ref, load)


def test_a_directory_swapped_after_registration_is_refused(
    saved_model_dir: Path, model_variant: Callable[..., Path]
) -> None:
    registered = ref_of(saved_model_dir)
    other = model_variant(seed=3)
    # The other directory is internally consistent, but it is not what the registry recorded.
    with pytest.raises(ModelRefused, match="registry says"):
        load_verified(ModelRef(registered.version, other, registered.sha256), load)
    with pytest.raises(ModelRefused, match="differ from the registered"):
        load_verified(ModelRef(read_manifest(other).version, other, registered.sha256), load)


def test_a_compile_failure_is_not_a_refusal(saved_model_dir: Path) -> None:
    """A pass that cannot be compiled is this machine's fault, not the model's: the error
    passes through (the watcher retries it; a starting worker stops in one line)."""
    from bert_core import CompileError

    def failing(_: Path) -> Predictor:
        raise CompileError("compiling the encoder failed (OSError: No space left on device)")

    with pytest.raises(CompileError, match="No space left"):
        load_verified(ref_of(saved_model_dir), failing)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelRefused, match="no such model directory"):
        load_verified(ModelRef("v", tmp_path / "absent", None), load)


class Registry:
    """The champion as the watcher would read it; `fail` simulates a database outage."""

    def __init__(self, ref: ModelRef | None) -> None:
        self.ref = ref
        self.fail = False
        self.reads = 0

    def champion(self) -> ModelRef | None:
        self.reads += 1
        if self.fail:
            raise ConnectionError("database unreachable")
        return self.ref


def test_watcher_switches_refuses_and_keeps_serving(
    saved_model_dir: Path, model_variant: Callable[..., Path], tmp_path: Path
) -> None:
    first = ref_of(saved_model_dir)
    slot = ModelSlot(load(saved_model_dir), first.version)
    registry = Registry(first)
    switched: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    watcher = ModelWatcher(
        slot,
        fetch_champion=registry.champion,
        load=load,
        poll_seconds=60,
        on_switch=lambda old, new: switched.append((old, new)),
        on_refuse=lambda ref, reason: refused.append((ref.version, reason)),
    )
    assert watcher.reconcile() is None  # already serving the champion

    second = ref_of(model_variant(seed=5))
    registry.ref = second
    assert watcher.reconcile() == second.version
    assert slot.version == second.version
    assert slot.current.predict(["gold rallies"])[0].model_version == second.version
    assert switched == [(first.version, second.version)]

    broken_dir = tmp_path / "broken"
    shutil.copytree(model_variant(seed=7), broken_dir)
    broken = ref_of(broken_dir)
    (broken_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    registry.ref = broken
    assert watcher.reconcile() is None
    assert slot.version == second.version  # still serving the last good model
    assert [version for version, _ in refused] == [broken.version]
    assert "does not match its manifest hash" in refused[0][1]
    assert watcher.reconcile() is None and len(refused) == 1  # a refused model is not retried

    registry.fail = True
    assert watcher.reconcile() is None  # an outage is logged, not raised
    registry.fail = False
    registry.ref = first  # rollback
    assert watcher.reconcile() == first.version
    assert slot.version == first.version


def test_watcher_thread_polls_and_stops(saved_model_dir: Path, model_variant: Callable[..., Path]) -> None:
    first = ref_of(saved_model_dir)
    second = ref_of(model_variant(seed=11))
    slot = ModelSlot(load(saved_model_dir), first.version)
    registry = Registry(second)
    done = threading.Event()
    watcher = ModelWatcher(
        slot,
        fetch_champion=registry.champion,
        load=load,
        poll_seconds=0.1,
        on_switch=lambda _old, _new: done.set(),
    )
    watcher.start()
    try:
        assert done.wait(30), "the watcher never switched"
        assert slot.version == second.version
    finally:
        watcher.stop()
        watcher.join(5)
    assert not watcher.is_alive()


def test_a_transient_load_failure_is_retried_and_a_refusal_waits_for_an_event(
    saved_model_dir: Path, model_variant: Callable[..., Path]
) -> None:
    first = ref_of(saved_model_dir)
    second = ref_of(model_variant(seed=13))
    slot = ModelSlot(load(saved_model_dir), first.version)
    failures = [MemoryError("out of memory")]

    def flaky_load(path: Path) -> Predictor:
        if failures:
            raise failures.pop()
        return load(path)

    watcher = ModelWatcher(slot, fetch_champion=lambda: second, load=flaky_load, poll_seconds=60)
    assert watcher.reconcile() is None and slot.version == first.version  # not refused for good…
    assert watcher.reconcile() == second.version  # …the next poll loads it


def test_the_watcher_loads_from_the_localized_directory_and_a_refused_copy_waits_for_an_event(
    saved_model_dir: Path, model_variant: Callable[..., Path], tmp_path: Path
) -> None:
    first = ref_of(saved_model_dir)
    source = model_variant(seed=17)
    second = ref_of(source)
    elsewhere = ModelRef(second.version, tmp_path / "not-on-this-host", second.sha256, second.manifest_sha256)
    slot = ModelSlot(load(saved_model_dir), first.version)
    localized: list[str] = []
    refusals = [ModelRefused("model.safetensors fetched from the registry does not match")]

    def localize(ref: ModelRef) -> Path:
        localized.append(ref.version)
        if refusals:
            raise refusals.pop()
        return source

    refused: list[str] = []
    watcher = ModelWatcher(
        slot,
        fetch_champion=lambda: elsewhere,
        load=load,
        localize=localize,
        poll_seconds=60,
        on_refuse=lambda ref, reason: refused.append(reason),
    )
    assert watcher.reconcile() is None and slot.version == first.version
    assert refused == ["model.safetensors fetched from the registry does not match"]
    assert watcher.reconcile() is None and localized == [second.version]  # refused: not fetched again
    watcher._refused.clear()  # what a model event does
    assert watcher.reconcile() == second.version and localized == [second.version] * 2


class BrokenEvents:
    """An event source whose client breaks on first use."""

    def __init__(self) -> None:
        self.closed = False

    def wait(self, timeout: float) -> bool:
        raise OSError("connection reset by broker")

    def close(self) -> None:
        self.closed = True


def test_a_broken_event_source_falls_back_to_polling(
    saved_model_dir: Path, model_variant: Callable[..., Path]
) -> None:
    first = ref_of(saved_model_dir)
    second = ref_of(model_variant(seed=17))
    slot = ModelSlot(load(saved_model_dir), first.version)
    registry = Registry(first)
    switched = threading.Event()
    events = BrokenEvents()
    watcher = ModelWatcher(
        slot,
        fetch_champion=registry.champion,
        load=load,
        poll_seconds=0.2,
        events=lambda _stop: events,
        on_switch=lambda _old, _new: switched.set(),
    )
    watcher.start()
    try:
        registry.ref = second
        assert switched.wait(30), "polling did not take over after the event source broke"
        assert events.closed and watcher.is_alive()
    finally:
        watcher.stop()
        watcher.join(5)


@pytest.fixture
def weights_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every weights file the manifest check hashes, in order (the costly hash of a load)."""
    import bert_core.manifest

    hashed: list[Path] = []
    real = bert_core.manifest.sha256_file

    def counting(path: Path) -> str:
        if path.name == "model.safetensors":
            hashed.append(path)
        return real(path)

    monkeypatch.setattr(bert_core.manifest, "sha256_file", counting)
    return hashed


def test_a_load_hashes_the_weights_once(saved_model_dir: Path, weights_hashes: list[Path]) -> None:
    """load_verified checks the files and hands what it checked to the loader, which does not
    hash them again."""
    load_verified(ref_of(saved_model_dir), load)
    assert weights_hashes == [saved_model_dir / "model.safetensors"]


def test_a_directory_localize_verified_is_not_hashed_again(
    saved_model_dir: Path, weights_hashes: list[Path]
) -> None:
    from bert_core import check_model_dir

    verified = check_model_dir(saved_model_dir)  # what localize hands on (local_model_dir's check)
    assert len(weights_hashes) == 1
    predictor = load_verified(ref_of(saved_model_dir).localized(verified), load)
    assert len(weights_hashes) == 1  # neither load_verified nor Predictor.load hashed them again
    assert predictor.predict(["oil prices plunge"])[0].model_version == verified.manifest.version


def test_weights_changed_after_localize_verified_them_are_refused(
    saved_model_dir: Path, tmp_path: Path, weights_hashes: list[Path]
) -> None:
    """A file written between the check and the load has another stamp (its ctime moves even
    when size and mtime are put back), so it is hashed again, and refused."""
    import os

    from bert_core import check_model_dir

    copy = Path(shutil.copytree(saved_model_dir, tmp_path / "model"))
    verified = check_model_dir(copy)
    weights = copy / "model.safetensors"
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    loads: list[object] = []
    with pytest.raises(ModelRefused, match="does not match its manifest hash"):
        load_verified(ref_of(saved_model_dir).localized(verified), loads.append)  # type: ignore[arg-type]
    assert loads == [] and len(weights_hashes) == 2  # hashed again, refused before loading


def test_a_verified_handle_for_another_manifest_is_not_trusted(
    saved_model_dir: Path, weights_hashes: list[Path]
) -> None:
    """The handle is reused only for the manifest hash the registry pins: a pin it was not
    checked against sends the load back to a full check, which refuses the directory."""
    from bert_core import check_model_dir

    verified = check_model_dir(saved_model_dir)
    ref = ModelRef(verified.manifest.version, saved_model_dir, None, manifest_sha256="0" * 64)
    with pytest.raises(ModelRefused, match="registered manifest hash"):
        load_verified(ref.localized(verified), load)
