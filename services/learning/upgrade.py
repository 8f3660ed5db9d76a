"""The bootstrap upgrade: train the full-quality model and let the gate replace the bootstrap.

`finsent run` serves a time-boxed bootstrap model within minutes (services/learning/serving.py)
and starts `finsent upgrade-model` beside the pipeline, at low priority. That process:

1. takes the upgrade lock (services.learning.upgrade_state): one training per home;
2. decides whether to train at all (services.learning.upgrade_plan.should_upgrade: only
   while the bootstrap model is the champion, and not again once the gate has refused);
3. trains the `finsent train` default recipe on the same seed data with no time box (unless
   FINSENT_UPGRADE_MAX_MINUTES) into FINSENT_HOME/models/full, recording its progress in the
   state file (a half-finished directory from an interrupted run is deleted first);
4. judges it as a retraining's challenger is judged: both models on the frozen and the
   recent holdout, `gate.decide` with the FINSENT_GATE_* policy; registers it, records the
   run (`retrain_runs`, trigger `upgrade`) and the decision (`gate_decisions`), then
   promotes it against the bootstrap model it was compared with, or rejects it. Workers
   following the registry switch by hot reload (services/scorer/model_reload.py).

The `retrain_runs` row carries the previous run's label watermark: this run trained on no
analyst labels, so the next retraining still counts them as new.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.learning.upgrade_plan import (
    UpgradeDecision,
    UpgradeState,
    first_estimate,
    remaining_estimate,
    should_upgrade,
    thread_slowdown,
)
from services.learning.upgrade_state import lock_holder, read_state, upgrade_lock, write_state

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from services.learning.gate import GateDecision
    from services.settings import Settings

log = logging.getLogger(__name__)

TRIGGER = "upgrade"  # retrain_runs.trigger of this run
TASKS = ("sentiment", "topic")


@dataclass(frozen=True)
class UpgradeOutcome:
    decision: UpgradeDecision  # whether it trained at all, and why
    state: UpgradeState | None  # the last recorded state (None: it did not start)


def manifest_version(model_dir: Path) -> str | None:
    """The version in a model directory's manifest (read as JSON: no torch here)."""
    try:
        return str(json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def bootstrap_training(model_dir: Path) -> dict[str, Any]:
    """The bootstrap model's training record (its finsent.json), for the first ETA."""
    try:
        record = json.loads((model_dir / "finsent.json").read_text(encoding="utf-8")).get("training", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return record if isinstance(record, dict) else {}


def champion_version(engine: Engine) -> str | None:
    from sqlalchemy.orm import Session

    from services.learning.registry import champion

    with Session(engine) as session:
        row = champion(session)
        return None if row is None else row.version


def plan(
    settings: Settings, engine: Engine, *, enabled: bool, disabled_by: str, pinned: bool
) -> UpgradeDecision:
    """`should_upgrade` on this home's state, lock and registry."""
    return should_upgrade(
        enabled=enabled,
        disabled_by=disabled_by,
        pinned=pinned,
        champion=champion_version(engine),
        bootstrap=manifest_version(settings.default_model_dir),
        state=read_state(settings.upgrade_dir),
        trainer_pid=lock_holder(settings.upgrade_dir),
    )


def first_upgrade_estimate(settings: Settings, *, threads: int, epochs: int, batch_size: int) -> float | None:
    """Seconds the background training should take, before it has measured itself: the
    bootstrap model's pace (it trained on FINSENT_TORCH_THREADS threads), slowed for the
    `threads` the training gets, within FINSENT_UPGRADE_MAX_MINUTES."""
    return first_estimate(
        bootstrap_training(settings.default_model_dir),
        epochs=epochs,
        batch_size=batch_size,
        max_minutes=settings.training.upgrade_max_minutes,
        slowdown=thread_slowdown(settings.inference.torch_threads, threads),
    )


def upgrade_threads(settings: Settings, cpu_count: int | None) -> int:
    """FINSENT_UPGRADE_TORCH_THREADS, else half the cores (at least 1): the scorer keeps a core."""
    if settings.training.upgrade_torch_threads is not None:
        return settings.training.upgrade_torch_threads
    return max(1, (cpu_count or 1) // 2)


def run_upgrade(settings: Settings, engine: Engine) -> UpgradeOutcome:
    """One whole upgrade (see the module docstring). A failure is recorded in the state file
    (status `failed`) and raised; a stop (SIGTERM, Ctrl-C: a BaseException) is recorded as
    `stopped` and raised."""
    with upgrade_lock(settings.upgrade_dir) as held:
        if not held:
            pid = lock_holder(settings.upgrade_dir)
            return UpgradeOutcome(
                UpgradeDecision(False, f"the full model is already training in process {pid}"), None
            )
        previous = read_state(settings.upgrade_dir)
        champion = champion_version(engine)
        decision = should_upgrade(
            enabled=True,
            disabled_by="",
            pinned=False,
            champion=champion,
            bootstrap=manifest_version(settings.default_model_dir),
            state=previous,
            trainer_pid=None,
        )
        if not decision.start or champion is None:
            log.info("no background upgrade: %s", decision.reason)
            return UpgradeOutcome(decision, previous)
        attempts = previous.attempts if previous is not None and previous.against == champion else 0
        started = datetime.now(UTC)
        state = UpgradeState(
            status="training",
            against=champion,
            pid=_pid(),
            started_at=started.isoformat(timespec="seconds"),
            attempts=attempts,
        )
        recorder = _Recorder(settings, state)
        try:
            return UpgradeOutcome(decision, _upgrade(settings, engine, recorder, previous, started))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            recorder.update(status="failed", reason=reason, attempts=recorder.state.attempts + 1)
            log.exception("background upgrade failed", extra={"against": champion})
            raise
        except BaseException:
            recorder.update(status="stopped", reason="stopped before it finished")
            log.info("background upgrade stopped", extra={"against": champion})
            raise


def _pid() -> int:
    import os

    return os.getpid()


class _Recorder:
    """The state as this run records it: every change written to the state file and logged."""

    def __init__(self, settings: Settings, state: UpgradeState) -> None:
        self._dir = settings.upgrade_dir
        self.state = state
        self.update()

    def update(self, **changes: Any) -> UpgradeState:
        self.state = self.state.but(updated_at=datetime.now(UTC).isoformat(timespec="seconds"), **changes)
        write_state(self._dir, self.state)
        return self.state


def _upgrade(
    settings: Settings,
    engine: Engine,
    recorder: _Recorder,
    previous: UpgradeState | None,
    started: datetime,
) -> UpgradeState:
    out_dir = settings.full_model_dir
    resumable = (
        previous is not None
        and previous.status == "trained"
        and previous.against == recorder.state.against
        and previous.version is not None
        and manifest_version(out_dir) == previous.version
    )
    timings: dict[str, float] = {}
    if resumable and previous is not None:  # trained, then stopped before the gate: judge it now
        recorder.update(status="trained", version=previous.version, dev=previous.dev, epochs=previous.epochs)
        log.info("background upgrade resumes at the gate", extra={"version": previous.version})
    else:
        if out_dir.exists():  # a half-finished run's directory: start clean
            shutil.rmtree(out_dir)
        clock = time.perf_counter()
        _train(settings, out_dir, recorder)
        timings["train_seconds"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    decision = _judge(settings, engine, recorder.state.against, out_dir)
    timings["evaluate_seconds"] = round(time.perf_counter() - clock, 1)
    return _record(settings, engine, recorder, decision, started, timings)


def _train(settings: Settings, out_dir: Path, recorder: _Recorder) -> None:
    """The `finsent train` default recipe on the seed data, progress into the state file."""
    import torch

    from bert_core import TrainConfig, soft_targets_choice, train_model
    from bert_core.encoders import encoder_path, find_spec

    spec = find_spec(settings.training.base_model or "minilm")
    # as `finsent train` on the seed data: the shipped teacher's targets where they match
    soft_targets, optional = soft_targets_choice(
        None, shipped=settings.training.shipped_soft_targets, teachers=False
    )
    config = TrainConfig(
        base_model=encoder_path(settings.training.base_model, settings.encoders_dir),
        max_length=settings.inference.max_length,
        learning_rate=spec.learning_rate if spec is not None else TrainConfig.learning_rate,
        seed=settings.training.seed,
        max_minutes=settings.training.upgrade_max_minutes,
        soft_targets=soft_targets,
        soft_targets_optional=optional,
        progress=False,
    )
    threads = torch.get_num_threads()
    estimate = first_upgrade_estimate(
        settings, threads=threads, epochs=config.epochs, batch_size=config.batch_size
    )
    recorder.update(epochs=config.epochs, eta_s=estimate)
    log.info(
        "background upgrade training",
        extra={
            "out": str(out_dir),
            "epochs": config.epochs,
            "max_minutes": config.max_minutes,
            "torch_threads": threads,
            "eta_s": estimate,
        },
    )
    progress = _ProgressHandler(recorder, max_minutes=config.max_minutes)
    training_log = logging.getLogger("bert_core.training")
    training_log.addHandler(progress)
    try:
        result, manifest = train_model(
            {"sentiment": settings.training.sentiment_data, "topic": settings.training.topic_data},
            out_dir,
            config,
            dev_fraction=settings.training.dev_fraction,
        )
    finally:
        training_log.removeHandler(progress)
    dev = {task: float(report["accuracy"]) for task, report in result.dev_reports.items()}
    recorder.update(
        status="trained", version=manifest.version, dev=dev, eta_s=0.0, elapsed_s=round(result.seconds, 1)
    )
    log.info(
        "background upgrade trained",
        extra={
            "version": manifest.version,
            "seconds": round(result.seconds, 1),
            **{f"dev_{t}_accuracy": a for t, a in dev.items()},
        },
    )


class _ProgressHandler(logging.Handler):
    """Picks bert_core.fine_tune's evaluation records (`eval {step, epoch, elapsed_s, dev_*}`,
    twice an epoch) and records the progress and ETA: the trainer has no other hook."""

    def __init__(self, recorder: _Recorder, *, max_minutes: float | None) -> None:
        super().__init__(logging.INFO)
        self._recorder = recorder
        self._max_minutes = max_minutes

    def emit(self, record: logging.LogRecord) -> None:
        entry: Any = record.args
        if record.msg != "eval %s" or not isinstance(entry, Mapping):
            return
        try:
            epoch, elapsed = float(entry["epoch"]), float(entry["elapsed_s"])
            dev = {t: float(entry[f"dev_{t}_accuracy"]) for t in TASKS if f"dev_{t}_accuracy" in entry}
            state = self._recorder.state
            eta = remaining_estimate(
                elapsed_s=elapsed, epoch=epoch, epochs=state.epochs, max_minutes=self._max_minutes
            )
            best = dev if sum(dev.values()) >= sum(state.dev.values()) else state.dev
            self._recorder.update(epoch=epoch, elapsed_s=elapsed, eta_s=eta, dev=best)
            log.info(
                "background upgrade progress",
                extra={
                    "epoch": epoch,
                    "epochs": state.epochs,
                    "elapsed_s": elapsed,
                    "eta_s": eta,
                    "dev": dev,
                },
            )
        except (KeyError, TypeError, ValueError, OSError):
            self.handleError(record)


def _judge(settings: Settings, engine: Engine, against: str, challenger_dir: Path) -> GateDecision:
    """Both models on the frozen and the recent holdout; `gate.decide` as a retraining does."""
    from sqlalchemy.orm import Session

    from services.learning.artifact_store import local_model_dir
    from services.learning.gate import GatePolicy, decide
    from services.learning.holdout import evaluate_on_holdouts, frozen_holdouts
    from services.learning.label_store import recent_holdout, to_labelled_data

    frozen = {task: h.data for task, h in frozen_holdouts(settings).items()}
    with Session(engine) as session:
        champion_dir = local_model_dir(session, against, cache_dir=settings.model_cache_dir)
        recent = {
            task: to_labelled_data(
                task, recent_holdout(session, task=task, newest=settings.learning.recent_holdout_size)
            )
            for task in TASKS
        }
    champion_report = evaluate_on_holdouts(champion_dir, frozen, recent)
    challenger_report = evaluate_on_holdouts(challenger_dir, frozen, recent)
    return decide(champion_report, challenger_report, GatePolicy.from_settings(settings))


def _record(
    settings: Settings,
    engine: Engine,
    recorder: _Recorder,
    decision: GateDecision,
    started: datetime,
    timings: Mapping[str, float],
) -> UpgradeState:
    """Register the full model, record the run and the gate's decision, then promote or reject."""
    from sqlalchemy.orm import sessionmaker

    from services.learning import registry
    from services.learning.retrain import last_watermark
    from services.storage.learning_models import GateDecisionRow, RetrainRunRow

    sessions: Callable[[], Session] = sessionmaker(engine, expire_on_commit=False)
    against = recorder.state.against
    now = datetime.now(UTC)
    details = {"upgrade": True, "dev_accuracy": recorder.state.dev, **timings}
    reason = "; ".join(decision.failures) if not decision.accepted else "; ".join(decision.reasons)
    with sessions() as session, session.begin():
        challenger = registry.register_model(
            session,
            settings.full_model_dir,
            note="full model trained by `finsent run` in the background to replace the bootstrap model",
            now=now,
            artifact_chunk_bytes=settings.inference.model_artifact_chunk_mb * 1024 * 1024,
        )
        version = challenger.version
        run = RetrainRunRow(
            trigger=TRIGGER,
            started_at=started,
            finished_at=now,
            status="promoted" if decision.accepted else "rejected",
            reason=reason[:2000],
            champion_version=against,
            challenger_version=version,
            new_labels=0,
            label_watermark=last_watermark(session),
            details=details,
        )
        session.add(run)
        session.flush()
        session.add(
            GateDecisionRow(
                run_id=run.id,
                challenger_version=version,
                champion_version=against,
                accepted=decision.accepted,
                reasons=list(decision.reasons),
                comparison=decision.comparison,
                decided_at=now,
            )
        )
        if not decision.accepted:
            registry.reject(session, version, by="the background upgrade", reason=reason, now=now)
    if not decision.accepted:
        log.warning("background upgrade rejected by the gate", extra={"version": version, "reason": reason})
        return recorder.update(status="rejected", version=version, reason=reason)
    try:
        with sessions() as session, session.begin():
            promoted = registry.promote(
                session,
                version,
                by="the background upgrade",
                reason="the full model passed the gate against the bootstrap model",
                now=now,
                expected_champion=against,
            )
            session.expunge(promoted)
    except registry.RegistryError as exc:
        reason = f"it passed the gate but was not promoted: {exc}"
        with sessions() as session, session.begin():
            session.get_one(RetrainRunRow, run.id).status = "skipped"
        log.warning("background upgrade not promoted", extra={"version": version, "reason": reason})
        return recorder.update(status="stopped", version=version, reason=reason)
    from services.learning.events import announce_champion

    try:
        announce_champion(settings, promoted)
    except Exception as exc:  # the promotion stands: workers also poll the registry
        log.warning("promoted %s but could not announce it (%s)", version, " ".join(str(exc).split())[:300])
    log.info("background upgrade promoted", extra={"version": version, "replaced": against})
    return recorder.update(status="promoted", version=version, reason="passed the gate")
