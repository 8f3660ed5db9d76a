"""One retraining run: new analyst labels → challenger → holdout gate → promote or reject.

The steps, each recorded in `retrain_runs` (skips included, with their reason):

1. Take the retraining lock (PostgreSQL advisory lock; a file lock for SQLite): several
   scheduler replicas, or a manual `finsent retrain --now` during a scheduled run, never
   train twice at once. A run that finds the lock taken is recorded as skipped.
2. Count labels newer than the last completed run's watermark; below
   FINSENT_RETRAIN_MIN_NEW_LABELS the run is skipped (unless forced).
3. Warm-start from the champion on the analyst labels (train split; one label per text by
   majority) plus a stratified replay sample of the seed data, within a time budget, by full
   fine-tuning or with LoRA adapters merged into the weights (FINSENT_RETRAIN_METHOD). The
   frozen and recent holdout texts are never trained on.
4. Register the challenger, evaluate champion and challenger on both holdouts, let the gate
   decide, record the decision, then promote (and announce on `model.events`) or reject.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from services.learning.gate import GateDecision
from services.learning.holdout import FrozenHoldout
from services.learning.training_set import merge_rows, replay_sample, replay_size
from services.settings import Settings
from services.storage.learning_models import GateDecisionRow, LabelRow, RetrainRunRow

log = logging.getLogger(__name__)

Trigger = Literal["schedule", "manual"]
RunStatus = Literal["skipped", "promoted", "rejected", "failed"]
_RETRAIN_LOCK_KEY = 0x66696E74  # "fint"; one retraining per database
TASKS = ("sentiment", "topic")


@dataclass
class RetrainOutcome:
    run_id: int
    status: RunStatus
    reason: str
    challenger: str | None = None
    champion: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def retrain_lock(engine: Engine, home: Path) -> Iterator[bool]:
    """Yields whether this process holds the lock; held until the block ends."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _RETRAIN_LOCK_KEY}).scalar()
            )
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _RETRAIN_LOCK_KEY})
                    conn.commit()
        return
    home.mkdir(parents=True, exist_ok=True)
    with (home / "retrain.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def last_watermark(session: Session) -> int:
    """The label watermark of the last run that trained (skipped runs consumed nothing)."""
    stmt = (
        select(RetrainRunRow.label_watermark)
        .where(RetrainRunRow.status.in_(("promoted", "rejected")))
        .order_by(RetrainRunRow.id.desc())
        .limit(1)
    )
    return int(session.scalar(stmt) or 0)


def _start_run(session: Session, *, trigger: Trigger, now: datetime) -> RetrainRunRow:
    run = RetrainRunRow(
        trigger=trigger,
        started_at=now,
        status="running",
        new_labels=0,
        label_watermark=0,
        details={},
    )
    session.add(run)
    session.flush()
    return run


def _finish(
    sessions: Callable[[], Session], run_id: int, status: RunStatus, reason: str, **values: Any
) -> RetrainOutcome:
    with sessions() as session, session.begin():
        run = session.get_one(RetrainRunRow, run_id)
        run.status = status
        run.reason = reason
        run.finished_at = _utcnow()
        for name, value in values.items():
            setattr(run, name, value)
        outcome = RetrainOutcome(
            run_id, status, reason, run.challenger_version, run.champion_version, dict(run.details or {})
        )
    level = logging.WARNING if status in ("failed", "rejected") else logging.INFO
    log.log(level, "retraining run %d %s: %s", run_id, status, reason, extra={"run_id": run_id})
    return outcome


def run_retraining(
    settings: Settings,
    engine: Engine,
    *,
    trigger: Trigger,
    force: bool = False,
    now: Callable[[], datetime] = _utcnow,
) -> RetrainOutcome:
    """One whole run (see the module docstring); never leaves a run row `running`."""
    from sqlalchemy.orm import sessionmaker

    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions() as session, session.begin():
        run_id = _start_run(session, trigger=trigger, now=now()).id
    with retrain_lock(engine, settings.home) as locked:
        if not locked:
            return _finish(sessions, run_id, "skipped", "another retraining is running (lock held)")
        try:
            return _locked_run(settings, sessions, run_id, force=force, now=now)
        except Exception as exc:
            log.exception("retraining run %d failed", run_id)
            return _finish(
                sessions, run_id, "failed", f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:2000]
            )


def _locked_run(
    settings: Settings,
    sessions: Callable[[], Session],
    run_id: int,
    *,
    force: bool,
    now: Callable[[], datetime],
) -> RetrainOutcome:
    from services.learning import registry
    from services.learning.label_store import count_labels_after, label_watermark

    with sessions() as session, session.begin():
        # Holding the lock, no other run can be in flight: a `running` row is a run whose
        # process died (SIGKILL, power loss). Close it so the history does not lie.
        session.execute(
            update(RetrainRunRow)
            .where(RetrainRunRow.status == "running", RetrainRunRow.id < run_id)
            .values(status="failed", reason="interrupted: its process ended mid-run", finished_at=now())
        )
    with sessions() as session:
        champion = registry.champion(session)
        since = last_watermark(session)
        watermark = label_watermark(session)
        new_labels = count_labels_after(session, since)
    base: dict[str, Any] = {"new_labels": new_labels, "label_watermark": watermark}
    if champion is None:
        return _finish(
            sessions,
            run_id,
            "skipped",
            "no champion to start from: adopt one with `finsent models register DIR --champion`",
            **base,
        )
    base["champion_version"] = champion.version
    if new_labels < settings.learning.retrain_min_new_labels and not force:
        return _finish(
            sessions,
            run_id,
            "skipped",
            f"{new_labels} new label(s) since the last retraining; at least "
            f"{settings.learning.retrain_min_new_labels} are needed (FINSENT_RETRAIN_MIN_NEW_LABELS)",
            **base,
        )
    log.info("retraining run %d: %d new label(s), warm start from %s", run_id, new_labels, champion.version)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    from services.learning.holdout import frozen_holdouts

    frozen = frozen_holdouts(settings)  # read (and hash-checked) once, for training and the gate
    sets, memory_sets, counts, exclude = _training_sets(settings, sessions, watermark, frozen)
    timings["data_seconds"] = round(time.perf_counter() - started, 2)

    out_dir = settings.registry_models_dir / f"run-{run_id}"
    from services.learning.artifact_store import local_model_dir

    with sessions() as session:  # this host may not hold the champion's registered directory
        champion_dir = local_model_dir(session, champion.version, cache_dir=settings.model_cache_dir)
    started = time.perf_counter()
    manifest, sizes = _fine_tune(settings, champion_dir, sets, memory_sets, out_dir)
    timings["train_seconds"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    decision, comparison = _judge(settings, sessions, champion_dir, out_dir, frozen)
    timings["evaluate_seconds"] = round(time.perf_counter() - started, 2)
    details = {"examples": counts, "excluded_holdout_texts": exclude, **timings, **sizes}
    values = {**base, "challenger_version": manifest.version, "details": details}
    with sessions() as session, session.begin():
        challenger = registry.register_model(
            session,
            out_dir,
            note=f"retraining run {run_id}",
            now=now(),
            artifact_chunk_bytes=settings.inference.model_artifact_chunk_mb * 1024 * 1024,
        )
        session.add(
            GateDecisionRow(
                run_id=run_id,
                challenger_version=challenger.version,
                champion_version=champion.version,
                accepted=decision.accepted,
                reasons=list(decision.reasons),
                comparison=comparison,
                decided_at=now(),
            )
        )
        if not decision.accepted:
            registry.reject(
                session,
                challenger.version,
                by=f"retrain run {run_id}",
                reason="; ".join(decision.failures),
                now=now(),
            )
    if not decision.accepted:
        return _finish(sessions, run_id, "rejected", "; ".join(decision.failures), **values)
    try:
        with sessions() as session, session.begin():
            # Against the champion the gate compared with: a promotion or rollback made by
            # someone else while this run trained is never silently undone.
            promoted = registry.promote(
                session,
                challenger.version,
                by=f"retrain run {run_id}",
                reason="passed the gate",
                now=now(),
                expected_champion=champion.version,
            )
            session.expunge(promoted)
    except registry.RegistryError as exc:
        return _finish(
            sessions,
            run_id,
            "skipped",
            f"the challenger passed the gate but was not promoted: {exc}; it stays a candidate, "
            "and its labels count as new for the next run",
            **values,
        )
    from services.learning.events import announce_champion

    try:
        details["announced"] = announce_champion(settings, promoted)
    except Exception as exc:  # the promotion stands: workers also poll the registry
        details["announced"] = False
        log.warning(
            "promoted %s but could not announce it on %s (%s); workers pick it up by polling the registry",
            promoted.version,
            settings.kafka.topic_model_events,
            " ".join(str(exc).split())[:300],
        )
    return _finish(sessions, run_id, "promoted", "; ".join(decision.reasons), **values)


def _training_sets(
    settings: Settings, sessions: Callable[[], Session], watermark: int, frozen: Mapping[str, FrozenHoldout]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, int]], int]:
    """Per task: analyst train-split labels (one per text) + a replay sample of the seed data,
    never a frozen or recent holdout text; and the rows for the memories beside the heads,
    the analyst labels + every seed training text."""
    from bert_core import load_task_files, split_sets
    from services.learning.holdout import exclude_holdout
    from services.learning.label_store import to_labelled_data, training_labels

    with sessions() as session:
        analyst = {
            task: to_labelled_data(task, training_labels(session, task=task, up_to=watermark))
            for task in TASKS
        }
        recent_texts = set(
            session.scalars(select(LabelRow.text).where(LabelRow.split != "train", LabelRow.id <= watermark))
        )
    seed_files = {"sentiment": settings.training.sentiment_data, "topic": settings.training.topic_data}
    seed = split_sets(
        load_task_files(seed_files), dev_fraction=settings.training.dev_fraction, seed=settings.training.seed
    ).train
    sets: dict[str, Any] = {}
    memory_sets: dict[str, Any] = {}
    counts: dict[str, dict[str, int]] = {}
    for task in TASKS:
        own = exclude_holdout(analyst[task], frozen)
        labelled = dict(zip(own.texts, own.labels, strict=True))
        pool = exclude_holdout(seed[task], frozen) if task in seed else None
        size = replay_size(
            len(labelled),
            ratio=settings.learning.retrain_replay_ratio,
            minimum=settings.learning.retrain_replay_min,
        )
        replay_texts, replay_labels = (
            replay_sample(
                pool.texts,
                pool.labels,
                size=size,
                exclude=recent_texts | set(labelled),
                seed=settings.training.seed,
            )
            if pool is not None
            else ([], [])
        )
        texts, labels = merge_rows(
            {t: y for t, y in labelled.items() if t not in recent_texts}, replay_texts, replay_labels
        )
        sets[task] = type(own)(task, texts, labels)
        counts[task] = {"analyst": len(labelled), "replay": len(replay_texts), "total": len(texts)}
        # The memory beside a head remembers every seed training text, not the replay sample:
        # a challenger whose memory knew only the sample would lose the champion's topic gain.
        seed_rows = list(zip(pool.texts, pool.labels, strict=True)) if pool is not None else []
        kept = [(t, y) for t, y in seed_rows if t not in recent_texts and t not in labelled]
        memory_texts, memory_labels = merge_rows(
            {t: y for t, y in labelled.items() if t not in recent_texts},
            [t for t, _ in kept],
            [y for _, y in kept],
        )
        memory_sets[task] = type(own)(task, memory_texts, memory_labels)
    held_out = len(recent_texts) + sum(len(h.data) for h in frozen.values())
    return sets, memory_sets, counts, held_out


def _fine_tune(
    settings: Settings, champion_dir: Path, sets: dict[str, Any], memory_sets: dict[str, Any], out_dir: Path
) -> tuple[Any, dict[str, Any]]:
    """Warm start from the champion; a small dev split of the training rows picks the best
    checkpoint (never a holdout: the gate must judge on data no decision has seen).

    With FINSENT_RETRAIN_METHOD=lora the adapters are merged into the saved model, which is
    served and registered like any other; the adapters alone (with the champion's version)
    are also written next to it, `<out_dir>.lora.safetensors`, and both sizes are returned:
    what a registry keeping only the delta would store."""
    from bert_core import (
        DEFAULT_LABELS,
        WEIGHTS_FILE,
        LoraOptions,
        MemoryOptions,
        TrainConfig,
        build_memories,
        fine_tune,
        save_adapter,
        save_result,
        split_sets,
    )

    learning = settings.learning
    lora = learning.retrain_method == "lora"
    split = split_sets(sets, dev_fraction=0.1, seed=settings.training.seed)
    config = TrainConfig(
        init_from=str(champion_dir),
        epochs=learning.retrain_epochs,
        max_minutes=learning.retrain_max_minutes,
        learning_rate=learning.retrain_lora_learning_rate if lora else learning.retrain_learning_rate,
        head_learning_rate=learning.retrain_learning_rate * 10,
        seed=settings.training.seed,
        progress=True,
        method=learning.retrain_method,
        lora=LoraOptions(
            rank=learning.retrain_lora_rank,
            alpha=learning.retrain_lora_alpha,
            target_modules=tuple(learning.retrain_lora_targets),
        ),
        memory=MemoryOptions(tasks=()),  # built below from `memory_sets`, not the training rows
    )
    labels = {t: list(DEFAULT_LABELS[t]) for t in sets}  # type: ignore[index]
    result = fine_tune(split.train, split.dev, labels, config)
    result.memories = build_memories(memory_sets, labels, MemoryOptions())
    result.model_config.training["retrained_from"] = result.parent_version
    manifest = save_result(result, out_dir, split.train, overwrite=True)
    sizes = {"method": learning.retrain_method, "weights_bytes": (out_dir / WEIGHTS_FILE).stat().st_size}
    if result.adapter is not None:
        adapter_file = out_dir.with_name(f"{out_dir.name}.lora.safetensors")
        sizes["adapter_bytes"] = save_adapter(
            adapter_file, result.adapter, base_version=result.parent_version
        )
    return manifest, sizes


def _judge(
    settings: Settings,
    sessions: Callable[[], Session],
    champion_dir: Path,
    challenger_dir: Path,
    frozen: Mapping[str, FrozenHoldout],
) -> tuple[GateDecision, dict[str, Any]]:
    """Both models on the frozen and the recent holdout, and the gate's decision."""
    from services.learning.gate import GatePolicy, decide
    from services.learning.holdout import evaluate_on_holdouts
    from services.learning.label_store import recent_holdout, to_labelled_data

    frozen_sets = {task: h.data for task, h in frozen.items()}
    with sessions() as session:
        recent = {
            task: to_labelled_data(
                task, recent_holdout(session, task=task, newest=settings.learning.recent_holdout_size)
            )
            for task in TASKS
        }
    champion_report = evaluate_on_holdouts(champion_dir, frozen_sets, recent)
    challenger_report = evaluate_on_holdouts(challenger_dir, frozen_sets, recent)
    decision = decide(champion_report, challenger_report, GatePolicy.from_settings(settings))
    return decision, decision.comparison
