"""The bootstrap upgrade's decisions, pure: whether `finsent run` should start training the
full-quality model, how long it will take, and what to tell the operator.

`finsent run` serves a time-boxed bootstrap model within minutes; the full model (the
`finsent train` recipe on the same seed data, no time box) then trains in the background
and replaces it through the promotion gate (services/learning/upgrade.py). These functions
take what was looked up (settings, the registry's champion, the state file, the lock) and
decide; they do no I/O, so the rules are tested without a model, a database or a process.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

UpgradeStatus = Literal["training", "trained", "promoted", "rejected", "failed", "stopped"]
ACTIVE: tuple[UpgradeStatus, ...] = ("training", "trained")  # a run was in flight
FINISHED: tuple[UpgradeStatus, ...] = ("promoted", "rejected")  # the gate decided
MAX_ATTEMPTS = 3  # failures in a row before `finsent run` stops retrying (the reason is shown)


@dataclass(frozen=True)
class UpgradeState:
    """The background upgrade as its trainer last recorded it (FINSENT_HOME/upgrade/state.json).

    `against`: the champion (the bootstrap model) it was started to replace; `version`: the
    full model, once trained; `attempts`: runs started against `against` that failed."""

    status: UpgradeStatus
    against: str
    pid: int | None = None
    version: str | None = None
    reason: str = ""
    started_at: str | None = None
    updated_at: str | None = None
    epochs: int = 0
    epoch: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    dev: dict[str, float] = field(default_factory=dict)  # task -> dev accuracy at the best checkpoint
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpgradeState:
        """Raises ValueError (or KeyError/TypeError) on a malformed record."""
        status = str(data["status"])
        if status not in (*ACTIVE, *FINISHED, "failed", "stopped"):
            raise ValueError(f"unknown upgrade status {status!r}")
        return cls(
            status=status,  # type: ignore[arg-type]
            against=str(data["against"]),
            pid=None if data.get("pid") is None else int(data["pid"]),
            version=None if data.get("version") is None else str(data["version"]),
            reason=str(data.get("reason", "")),
            started_at=data.get("started_at"),
            updated_at=data.get("updated_at"),
            epochs=int(data.get("epochs", 0)),
            epoch=float(data.get("epoch", 0.0)),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            eta_s=None if data.get("eta_s") is None else float(data["eta_s"]),
            dev={str(k): float(v) for k, v in dict(data.get("dev", {})).items()},
            attempts=int(data.get("attempts", 0)),
        )

    def but(self, **changes: Any) -> UpgradeState:
        return replace(self, **changes)


@dataclass(frozen=True)
class UpgradeDecision:
    start: bool
    reason: str  # one line for the operator, whichever way it went


def should_upgrade(
    *,
    enabled: bool,
    disabled_by: str,
    pinned: bool,
    champion: str | None,
    bootstrap: str | None,
    state: UpgradeState | None,
    trainer_pid: int | None,
) -> UpgradeDecision:
    """Start the background training of the full model?

    Only when the registry's champion is the bootstrap model that `finsent run` trained: a
    full model already promoted, a retraining's model, or one promoted by hand is never
    replaced by this. Once the gate has refused a full model against this bootstrap model,
    not again (the same recipe on the same data would be refused the same way). A run left
    half-done by a stopped `finsent run` restarts cleanly; one that keeps failing stops
    being retried after `MAX_ATTEMPTS`. `trainer_pid`: the process holding the upgrade lock,
    if any (another `finsent run` on this home is training it)."""
    if not enabled:
        return UpgradeDecision(False, f"the background upgrade is off ({disabled_by})")
    if pinned:
        return UpgradeDecision(
            False, "a pinned model is served (--model / FINSENT_MODEL): no background upgrade replaces it"
        )
    if champion is None or bootstrap is None:
        return UpgradeDecision(False, "no bootstrap model serves as the registry's champion")
    if trainer_pid is not None:
        return UpgradeDecision(False, f"the full model is already training in process {trainer_pid}")
    if champion != bootstrap:
        return UpgradeDecision(
            False,
            f"the champion {champion} is not the bootstrap model: already upgraded, or replaced by a "
            "retraining or by hand",
        )
    if state is not None and state.against == champion:
        if state.status == "rejected":
            return UpgradeDecision(
                False,
                f"the gate refused the full model {state.version} against this bootstrap model "
                f"({state.reason}); the bootstrap model stays",
            )
        if state.status == "promoted":
            return UpgradeDecision(
                False,
                f"the full model {state.version} was promoted, and later replaced by this bootstrap model "
                "(a rollback): not training it again",
            )
        if state.status == "failed" and state.attempts >= MAX_ATTEMPTS:
            return UpgradeDecision(
                False,
                f"the background training failed {state.attempts} times (last: {state.reason}); "
                "run `finsent upgrade-model` to see why",
            )
        if state.status in ACTIVE:
            return UpgradeDecision(True, "an interrupted background training restarts from the beginning")
    return UpgradeDecision(True, "the bootstrap model serves while the full model trains")


def steps_per_epoch(train_rows: Mapping[str, int], batch_size: int) -> int:
    """As bert_core.fine_tune counts them: every task's batches, one after another."""
    return sum(math.ceil(n / batch_size) for n in train_rows.values())


# How the background training's time grows with fewer torch threads than the bootstrap had:
# (threads_before / threads_now) ** this. Fitted to one run (docs/performance.md "Training
# time", 2 cores): the full recipe on one thread at nice +19 beside the scorer took 22.6 min,
# where the bootstrap's pace on two threads (the first estimate unscaled) said 15, so 1.5, not 2
# (2 ** 0.6 = 1.52). A wall-time figure, evaluations included, as the estimate is.
THREAD_SCALING_EXPONENT = 0.6


def thread_slowdown(bootstrap_threads: int, threads: int) -> float:
    """How much longer the background training takes than the bootstrap's pace says: it gets
    fewer threads (the scorer keeps a core), and a thread less does not cost its share of the
    time (memory-bound kernels, single-threaded Python between them)."""
    if threads <= 0 or bootstrap_threads <= threads:
        return 1.0
    return float((bootstrap_threads / threads) ** THREAD_SCALING_EXPONENT)


def first_estimate(
    bootstrap_training: Mapping[str, Any],
    *,
    epochs: int,
    batch_size: int,
    max_minutes: float | None,
    slowdown: float = 1.0,
) -> float | None:
    """Seconds the full training should take, before it has measured itself: the bootstrap
    model's own time per step (its finsent.json `training` record) times the full run's
    steps, times `slowdown` (`thread_slowdown`), capped by the time box. None if the record
    lacks it."""
    try:
        seconds, steps = float(bootstrap_training["seconds"]), int(bootstrap_training["steps"])
        rows = {str(k): int(v) for k, v in dict(bootstrap_training["train_rows"]).items()}
    except (KeyError, TypeError, ValueError):
        return None
    if steps <= 0 or seconds <= 0:
        return None
    estimate = seconds / steps * steps_per_epoch(rows, batch_size) * epochs * slowdown
    return min(estimate, max_minutes * 60) if max_minutes else estimate


def remaining_estimate(
    *, elapsed_s: float, epoch: float, epochs: int, max_minutes: float | None
) -> float | None:
    """Seconds left, from the pace so far (`epoch` done of `epochs` in `elapsed_s`). An upper
    bound: an early stop on a dev plateau ends it sooner."""
    if epoch <= 0 or epochs <= 0:
        return None
    left = max(0.0, elapsed_s / epoch * (epochs - epoch))
    if max_minutes:
        left = min(left, max(0.0, max_minutes * 60 - elapsed_s))
    return left


def minutes_text(seconds: float | None) -> str:
    if seconds is None:
        return "unknown until its first evaluation"
    if seconds < 90:
        return "about a minute"
    return f"about {round(seconds / 60)} min"


def progress_line(state: UpgradeState) -> str:
    """One line on where the background training is (for `finsent run` and the logs)."""
    if state.status == "training":
        done = f"epoch {state.epoch:.1f} of {state.epochs}" if state.epoch else "starting"
        dev = ", ".join(f"{task} dev acc {acc:.3f}" for task, acc in sorted(state.dev.items()))
        return (
            f"the full model is training in the background ({done}, {state.elapsed_s / 60:.1f} min"
            + (f"; {dev}" if dev else "")
            + f"): ETA {minutes_text(state.eta_s)}; it will replace the bootstrap model when it beats it"
        )
    if state.status == "trained":
        return f"the full model {state.version} is trained; the gate is comparing it with the bootstrap model"
    if state.status == "promoted":
        return (
            f"the full model {state.version} passed the gate and is the champion: the workers switch to it "
            "without a restart"
        )
    if state.status == "rejected":
        return f"the gate refused the full model {state.version}; the bootstrap model stays: {state.reason}"
    if state.status == "failed":
        return f"the background training failed: {state.reason}; the bootstrap model stays"
    return f"the background training stopped ({state.reason}); the next `finsent run` restarts it"
