"""What `finsent run` prints of its background upgrade (services.embedded.upgrade_run), with
the state file and the child process replaced by plain objects and the clock by a number."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.embedded.upgrade_run import PROGRESS_EVERY_S, BackgroundUpgrade, plan_without_registry
from services.learning.upgrade_plan import UpgradeState
from services.settings import Settings


class FakeProcess:
    pid = 99
    log_path = Path("upgrade-model.log")

    def __init__(self) -> None:
        self.code: int | None = None
        self.stopped = False

    def exit_code(self) -> int | None:
        return self.code

    def stop(self, timeout: float) -> int | None:
        self.stopped = True
        return 0

    def log_tail(self) -> str:
        return "last log line"


def make(
    settings: Settings, states: list[UpgradeState | None]
) -> tuple[BackgroundUpgrade, FakeProcess, list[float]]:
    now = [0.0]
    upgrade = BackgroundUpgrade(settings, {}, read_state=lambda _dir: states[-1], clock=lambda: now[0])
    fake = FakeProcess()
    upgrade.process = fake  # type: ignore[assignment]
    return upgrade, fake, now


def training(**changes: object) -> UpgradeState:
    return UpgradeState(status="training", against="boot", pid=99, epochs=4).but(**changes)


def test_progress_every_few_minutes_and_each_change_once(capsys: pytest.CaptureFixture[str]) -> None:
    states: list[UpgradeState | None] = [training()]
    upgrade, fake, now = make(Settings(), states)
    upgrade.poll()  # the first read: a progress line
    assert capsys.readouterr().out.count("training in the background (starting") == 1
    for t in (1.0, 5.0, PROGRESS_EVERY_S - 1):
        now[0] = t
        states.append(training(epoch=0.5, eta_s=600))
        upgrade.poll()
    assert capsys.readouterr().out == ""
    now[0] = PROGRESS_EVERY_S + 1
    upgrade.poll()
    assert "epoch 0.5 of 4" in capsys.readouterr().out
    states.append(training(status="promoted", version="v2"))
    now[0] += 3
    upgrade.poll()
    now[0] += 3
    upgrade.poll()
    assert capsys.readouterr().out.count("v2 passed the gate") == 1
    fake.code = 0
    now[0] += 3
    upgrade.poll()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    upgrade.stop()  # already ended: nothing to say
    assert capsys.readouterr().out == ""


def test_another_trainers_state_is_not_reported_and_a_crash_is(capsys: pytest.CaptureFixture[str]) -> None:
    states: list[UpgradeState | None] = [training(pid=12345, status="promoted", version="old")]
    upgrade, fake, now = make(Settings(), states)
    upgrade.poll()
    assert capsys.readouterr().out == ""
    fake.code = 1
    now[0] = 10
    upgrade.poll()
    err = capsys.readouterr().err
    assert "exited with code 1" in err and "the bootstrap model stays" in err and "last log line" in err


def test_stopping_a_running_training_says_it_restarts_next_time(capsys: pytest.CaptureFixture[str]) -> None:
    upgrade, fake, _now = make(Settings(), [training(eta_s=1200)])
    upgrade.stop()
    out = capsys.readouterr().out
    assert fake.stopped
    assert "(ETA was about 20 min): stopped with this run" in out
    assert "it will replace the bootstrap model when it beats it" in out


def test_turned_off_or_pinned_needs_no_registry() -> None:
    assert plan_without_registry(enabled=False, disabled_by="--no-upgrade", pinned=False).reason.endswith(
        "(--no-upgrade)"
    )
    assert not plan_without_registry(enabled=True, disabled_by="", pinned=True).start
