"""The bootstrap upgrade's pure decisions (services.learning.upgrade_plan) and its state file
and lock (services.learning.upgrade_state), without a model, a database or `finsent run`."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from services.learning.upgrade_plan import (
    MAX_ATTEMPTS,
    UpgradeState,
    first_estimate,
    minutes_text,
    progress_line,
    remaining_estimate,
    should_upgrade,
    steps_per_epoch,
    thread_slowdown,
)
from services.learning.upgrade_state import (
    LOCK_FILE,
    STATE_FILE,
    lock_holder,
    read_state,
    upgrade_lock,
    write_state,
)

BOOT = "v-boot"


def decide(**overrides: object) -> tuple[bool, str]:
    given: dict[str, object] = {
        "enabled": True,
        "disabled_by": "--no-upgrade",
        "pinned": False,
        "champion": BOOT,
        "bootstrap": BOOT,
        "state": None,
        "trainer_pid": None,
    }
    decision = should_upgrade(**(given | overrides))  # type: ignore[arg-type]
    return decision.start, decision.reason


def test_a_fresh_bootstrap_champion_starts_the_upgrade() -> None:
    start, reason = decide()
    assert start and "full model trains" in reason


def test_turned_off_says_by_what() -> None:
    assert decide(enabled=False) == (False, "the background upgrade is off (--no-upgrade)")
    start, reason = decide(enabled=False, disabled_by="FINSENT_UPGRADE_BOOTSTRAP=false")
    assert not start and "FINSENT_UPGRADE_BOOTSTRAP=false" in reason


def test_a_pinned_model_is_never_upgraded() -> None:
    start, reason = decide(pinned=True)
    assert not start and "pinned" in reason


def test_a_champion_other_than_the_bootstrap_is_not_replaced() -> None:
    """A full model already promoted (or a retraining's, or one promoted by hand)."""
    start, reason = decide(champion="v-full")
    assert not start and "v-full is not the bootstrap model" in reason
    assert decide(champion=None)[0] is False
    assert decide(bootstrap=None)[0] is False


def test_a_live_trainer_is_not_doubled() -> None:
    start, reason = decide(trainer_pid=4242)
    assert not start and "4242" in reason


def test_a_refusal_against_this_bootstrap_is_final_but_not_against_another() -> None:
    refused = UpgradeState(status="rejected", against=BOOT, version="v-full", reason="recall too low")
    start, reason = decide(state=refused)
    assert not start and "refused the full model v-full" in reason and "recall too low" in reason
    assert decide(state=refused.but(against="older-boot"))[0] is True


def test_a_rolled_back_full_model_is_not_trained_again() -> None:
    start, reason = decide(state=UpgradeState(status="promoted", against=BOOT, version="v-full"))
    assert not start and "rollback" in reason


@pytest.mark.parametrize("status", ["training", "trained"])
def test_an_interrupted_run_restarts(status: str) -> None:
    start, reason = decide(state=UpgradeState(status=status, against=BOOT, pid=1))  # type: ignore[arg-type]
    assert start and "restarts" in reason


def test_failures_are_retried_up_to_the_limit() -> None:
    failed = UpgradeState(status="failed", against=BOOT, reason="MemoryError", attempts=MAX_ATTEMPTS - 1)
    assert decide(state=failed)[0] is True
    start, reason = decide(state=failed.but(attempts=MAX_ATTEMPTS))
    assert not start and "MemoryError" in reason and "finsent upgrade-model" in reason
    assert decide(state=UpgradeState(status="stopped", against=BOOT))[0] is True


def test_the_first_estimate_scales_the_bootstrap_pace_to_the_full_run() -> None:
    record = {"seconds": 60.0, "steps": 30, "train_rows": {"sentiment": 640, "topic": 320}}
    assert steps_per_epoch({"sentiment": 640, "topic": 321}, 32) == 20 + 11
    # 2 s per step, 30 steps per epoch, 4 epochs
    assert first_estimate(record, epochs=4, batch_size=32, max_minutes=None) == pytest.approx(240.0)
    assert first_estimate(record, epochs=4, batch_size=32, max_minutes=1.0) == pytest.approx(60.0)
    assert first_estimate({}, epochs=4, batch_size=32, max_minutes=None) is None
    assert first_estimate({**record, "steps": 0}, epochs=4, batch_size=32, max_minutes=None) is None


def test_fewer_threads_slow_the_estimate_less_than_their_ratio_and_before_the_time_box() -> None:
    # measured on 2 cores: one thread took 1.5x the time of two, not 2x
    assert thread_slowdown(2, 1) == pytest.approx(1.516, abs=0.001)
    assert thread_slowdown(2, 2) == 1.0
    assert thread_slowdown(1, 2) == 1.0  # more threads than the bootstrap: no speed-up promised
    assert thread_slowdown(2, 0) == 1.0
    record = {"seconds": 60.0, "steps": 30, "train_rows": {"sentiment": 640, "topic": 320}}
    slow = first_estimate(record, epochs=4, batch_size=32, max_minutes=None, slowdown=1.5)
    assert slow == pytest.approx(360.0)
    # the time box caps the scaled estimate, not the other way round
    capped = first_estimate(record, epochs=4, batch_size=32, max_minutes=5.0, slowdown=1.5)
    assert capped == pytest.approx(300.0)


def test_the_remaining_time_follows_the_pace_and_the_time_box() -> None:
    assert remaining_estimate(elapsed_s=100, epoch=0.5, epochs=4, max_minutes=None) == pytest.approx(700)
    assert remaining_estimate(elapsed_s=100, epoch=0.5, epochs=4, max_minutes=5) == pytest.approx(200)
    assert remaining_estimate(elapsed_s=100, epoch=0.0, epochs=4, max_minutes=None) is None
    assert minutes_text(None).startswith("unknown")
    assert minutes_text(30) == "about a minute"
    assert minutes_text(20 * 60) == "about 20 min"


def test_progress_lines_say_what_is_happening() -> None:
    training = UpgradeState(
        status="training", against=BOOT, epochs=4, epoch=1.5, elapsed_s=300, eta_s=500, dev={"sentiment": 0.8}
    )
    line = progress_line(training)
    assert "epoch 1.5 of 4" in line and "sentiment dev acc 0.800" in line
    assert "ETA about 8 min; it will replace the bootstrap model when it beats it" in line
    assert "v9 passed the gate" in progress_line(training.but(status="promoted", version="v9"))
    refused = progress_line(training.but(status="rejected", version="v9", reason="F1 lower"))
    assert "refused the full model v9" in refused and "bootstrap model stays: F1 lower" in refused


def test_the_state_round_trips_and_a_damaged_file_reads_as_none(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    state = UpgradeState(status="training", against=BOOT, pid=7, epochs=4, dev={"topic": 0.9}, eta_s=None)
    write_state(tmp_path / "upgrade", state)
    assert read_state(tmp_path / "upgrade") == state
    assert sorted(p.name for p in (tmp_path / "upgrade").iterdir()) == [STATE_FILE]  # no temporary left
    (tmp_path / "upgrade" / STATE_FILE).write_text("{not json", encoding="utf-8")
    assert read_state(tmp_path / "upgrade") is None
    (tmp_path / "upgrade" / STATE_FILE).write_text(json.dumps({"status": "dancing", "against": BOOT}))
    assert read_state(tmp_path / "upgrade") is None


def _hold_lock(
    directory: str, holding: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event
) -> None:
    with upgrade_lock(Path(directory)) as held:
        assert held
        holding.set()
        release.wait(30)


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    assert lock_holder(tmp_path) is None
    ctx = multiprocessing.get_context("fork")
    holding, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(tmp_path), holding, release))
    child.start()
    try:
        assert holding.wait(30)
        assert lock_holder(tmp_path) == child.pid
        with upgrade_lock(tmp_path) as held:
            assert not held  # a second trainer on this home does not start
    finally:
        release.set()
        child.join(30)
    assert lock_holder(tmp_path) is None
    # A holder killed outright leaves the file behind, not the lock.
    holding.clear()
    release.clear()
    child = ctx.Process(target=_hold_lock, args=(str(tmp_path), holding, release))
    child.start()
    assert holding.wait(30)
    os.kill(child.pid or 0, 9)
    child.join(30)
    assert (tmp_path / LOCK_FILE).is_file()
    assert lock_holder(tmp_path) is None
    with upgrade_lock(tmp_path) as held:
        assert held
        assert lock_holder(tmp_path) == os.getpid()


def test_the_scheduler_exports_the_recorded_state(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from services.learning.upgrade_metrics import UpgradeCollector

    registry = CollectorRegistry()
    registry.register(UpgradeCollector(tmp_path))
    assert b"finsent_upgrade" not in generate_latest(registry)  # no upgrade on this home: no samples
    write_state(
        tmp_path, UpgradeState(status="training", against=BOOT, epochs=4, epoch=1.5, elapsed_s=90, eta_s=150)
    )
    text = generate_latest(registry).decode()
    assert 'finsent_upgrade_status{status="training"} 1.0' in text
    assert 'finsent_upgrade_status{status="promoted"} 0.0' in text
    assert "finsent_upgrade_epochs_done 1.5" in text and "finsent_upgrade_eta_seconds 150.0" in text
    write_state(tmp_path, UpgradeState(status="promoted", against=BOOT, version="v2", eta_s=0.0))
    text = generate_latest(registry).decode()
    assert (
        'finsent_upgrade_status{status="promoted"} 1.0' in text and "finsent_upgrade_eta_seconds" not in text
    )
