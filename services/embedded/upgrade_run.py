"""The background upgrade as `finsent run` supervises it: `finsent upgrade-model` in a child
process beside the pipeline, its progress printed every few minutes, stopped first on exit.

The child lowers its own priority (services/cli/upgrade_model.py) and records its progress
in the state file; this side only reads that file, so a slow training never slows the
supervisor's loop. Unlike the pipeline's services, the child is expected to end: its exit
is reported (promoted, refused, failed), never treated as a failure of the run. On exit
(Ctrl-C, a failure, the end of `--demo --exit-when-done`) it is stopped with SIGTERM before
anything else, records `stopped`, and the next `finsent run` on this home starts it again.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from services.embedded.console import say, warn
from services.learning.upgrade_plan import UpgradeDecision, UpgradeState, minutes_text, progress_line

if TYPE_CHECKING:
    from services.embedded.service_process import ServiceProcess
    from services.learning.serving import OnDatabase
    from services.settings import Settings

PROGRESS_EVERY_S = 180.0  # a progress line every few minutes while it trains
READ_EVERY_S = 2.0  # how often the state file is read
STOP_TIMEOUT_S = 30.0


def plan_upgrade(
    settings: Settings, *, requested: bool, pinned: bool, on_database: OnDatabase
) -> UpgradeDecision:
    """Whether this run starts the background training (`requested`: not --no-upgrade)."""
    from services.learning.upgrade import plan
    from services.storage import make_engine

    enabled = requested and settings.training.upgrade_bootstrap
    disabled_by = "--no-upgrade" if not requested else "FINSENT_UPGRADE_BOOTSTRAP=false"

    def decide(url: str) -> UpgradeDecision:
        engine = make_engine(url)
        try:
            return plan(settings, engine, enabled=enabled, disabled_by=disabled_by, pinned=pinned)
        finally:
            engine.dispose()

    if not enabled or pinned:  # no database look-up needed to say no
        return plan_without_registry(enabled=enabled, disabled_by=disabled_by, pinned=pinned)
    return on_database(decide)


def plan_without_registry(*, enabled: bool, disabled_by: str, pinned: bool) -> UpgradeDecision:
    from services.learning.upgrade_plan import should_upgrade

    return should_upgrade(
        enabled=enabled,
        disabled_by=disabled_by,
        pinned=pinned,
        champion=None,
        bootstrap=None,
        state=None,
        trainer_pid=None,
    )


class BackgroundUpgrade:
    """`finsent upgrade-model` as a child of `finsent run`, and what it prints of it."""

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        *,
        read_state: Callable[[Path], UpgradeState | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from services.embedded.service_process import ServiceProcess
        from services.learning.upgrade_state import read_state as read_state_file

        self._settings = settings
        self._read = read_state or read_state_file
        self._clock = clock
        self.process: ServiceProcess = ServiceProcess(
            "upgrade-model", env=env, log_path=settings.logs_dir / "upgrade-model.log"
        )
        self.state: UpgradeState | None = None
        self._shown: tuple[str, str | None] | None = None
        self._next_progress = 0.0
        self._next_read = 0.0
        self._ended = False

    def start(self) -> None:
        from services.learning.upgrade import first_upgrade_estimate, upgrade_threads

        self.process.start()
        threads = upgrade_threads(self._settings, os.cpu_count())
        estimate = first_upgrade_estimate(
            self._settings, threads=threads, epochs=_default_epochs(), batch_size=_default_batch_size()
        )
        nice = self._settings.training.upgrade_nice
        plural = "s" if threads != 1 else ""
        say(
            f"upgrade   pid {self.process.pid} (nice +{nice}, {threads} torch thread{plural}), "
            f"log {self.process.log_path}"
        )
        say(
            f"upgrade   the full model is training in the background: ETA {minutes_text(estimate)}; "
            "it will replace the bootstrap model when it beats it (`finsent models list` shows it once "
            "registered)"
        )
        self._next_progress = self._clock() + PROGRESS_EVERY_S

    def poll(self) -> None:
        """Print what changed; a progress line every PROGRESS_EVERY_S while it trains."""
        now = self._clock()
        if self._ended or now < self._next_read:
            return
        self._next_read = now + READ_EVERY_S
        code = self.process.exit_code()
        state = self._read(self._settings.upgrade_dir)
        if state is not None and state.pid == self.process.pid:
            self.state = state
            key = (state.status, state.version)
            if key != self._shown and state.status != "training":
                self._shown = key
                say(f"upgrade   {progress_line(state)}")
            elif state.status == "training" and now >= self._next_progress:
                self._next_progress = now + PROGRESS_EVERY_S
                say(f"upgrade   {progress_line(state)}")
        if code is not None:
            self._ended = True
            if code != 0 and (self.state is None or self.state.status not in ("rejected", "failed")):
                warn(
                    f"finsent: warning: the background training exited with code {code}; the bootstrap "
                    f"model stays; its log ({self.process.log_path}) ends:\n{self.process.log_tail()}"
                )
            elif self.state is None:
                say(f"upgrade   nothing to do: see {self.process.log_path}")

    def stop(self) -> None:
        """Stop the training (first of all, so the others stop faster) and say what that means."""
        running = self.process.exit_code() is None
        code = self.process.stop(timeout=STOP_TIMEOUT_S)
        if running:
            state = self._read(self._settings.upgrade_dir)
            eta = (
                f" (ETA was {minutes_text(state.eta_s)})"
                if state is not None and state.status == "training"
                else ""
            )
            say(
                f"upgrade   the full model was training in the background{eta}: stopped with this run; the "
                "next `finsent run` on this home starts it again, and it will replace the bootstrap model "
                "when it beats it"
            )
            if code not in (0, None, -signal.SIGTERM):  # SIGTERM before its handler was set: stopped as asked
                warn(f"finsent: warning: the background training exited with code {code} when stopped")


def _default_epochs() -> int:
    from bert_core import TrainConfig

    return TrainConfig.epochs


def _default_batch_size() -> int:
    from bert_core import TrainConfig

    return TrainConfig.batch_size
