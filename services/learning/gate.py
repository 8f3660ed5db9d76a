"""The promotion gate: may a challenger replace the champion? A pure function of two reports.

Three rules, each explained in a sentence with its numbers (the sentences are stored with
the decision and shown to analysts, so a rejection is never a mystery):

1. Frozen holdout, per task: the challenger's macro-F1 may be at most `macro_f1_tolerance`
   below the champion's. The frozen holdout never changes, so this catches forgetting.
2. Frozen holdout, per class: recall must not be below its floor. A class the champion
   already fails is not held against the challenger unless it gets worse there: otherwise
   one hard class would block every future model.
3. Recent holdout (the newest analyst labels, never trained on): the challenger must be
   better — its mean macro-F1 over the tasks with at least `min_recent_examples` recent
   labels must beat the champion's by more than `min_recent_improvement` (0: strictly
   better). When no task has that many, improvement cannot be measured, so only no
   regression is required on whatever recent labels exist (none: no recent check).

Reports and the policy are plain data, so the retrainer, the CLI and the tests call
`decide` without a model or a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.settings import Settings

EPSILON = 1e-9  # metric arithmetic in floats: 0.71 - 0.70 must not read as 0.010000000000000009


@dataclass(frozen=True)
class TaskMetrics:
    """One model's scores on one task's evaluation set."""

    accuracy: float
    macro_f1: float
    per_class_recall: dict[str, float]  # only classes present in the set (recall is undefined otherwise)
    n: int
    per_class_support: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskMetrics:
        return cls(
            accuracy=float(data["accuracy"]),
            macro_f1=float(data["macro_f1"]),
            per_class_recall={str(k): float(v) for k, v in data["per_class_recall"].items()},
            n=int(data["n"]),
            per_class_support={str(k): int(v) for k, v in data.get("per_class_support", {}).items()},
        )


@dataclass(frozen=True)
class HoldoutReport:
    """One model on both holdouts, per task. A task missing from `recent` had no recent labels."""

    frozen: dict[str, TaskMetrics]
    recent: dict[str, TaskMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "frozen": {t: m.to_dict() for t, m in self.frozen.items()},
            "recent": {t: m.to_dict() for t, m in self.recent.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HoldoutReport:
        return cls(
            frozen={t: TaskMetrics.from_dict(m) for t, m in data.get("frozen", {}).items()},
            recent={t: TaskMetrics.from_dict(m) for t, m in data.get("recent", {}).items()},
        )


@dataclass(frozen=True)
class GatePolicy:
    """The gate's thresholds; defaults live in settings (FINSENT_GATE_*), see `from_settings`."""

    macro_f1_tolerance: float = 0.01
    recall_floor: float = 0.2
    recall_floors: dict[str, dict[str, float]] = field(default_factory=dict)  # {task: {class: floor}}
    min_recent_improvement: float = 0.0
    min_recent_examples: int = 30

    def __post_init__(self) -> None:
        if self.macro_f1_tolerance < 0:
            raise ValueError(f"macro_f1_tolerance must be >= 0, got {self.macro_f1_tolerance}")
        floors = [self.recall_floor, *(f for fs in self.recall_floors.values() for f in fs.values())]
        if any(not 0.0 <= f <= 1.0 for f in floors):
            raise ValueError(f"recall floors must be in [0, 1], got {floors}")
        if self.min_recent_improvement < 0:
            raise ValueError(f"min_recent_improvement must be >= 0, got {self.min_recent_improvement}")
        if self.min_recent_examples < 1:
            raise ValueError(f"min_recent_examples must be >= 1, got {self.min_recent_examples}")

    def floor_for(self, task: str, label: str) -> float:
        return self.recall_floors.get(task, {}).get(label, self.recall_floor)

    @classmethod
    def from_settings(cls, settings: Settings) -> GatePolicy:
        return cls(
            macro_f1_tolerance=settings.learning.gate_macro_f1_tolerance,
            recall_floor=settings.learning.gate_recall_floor,
            recall_floors={t: dict(fs) for t, fs in settings.learning.gate_recall_floors.items()},
            min_recent_improvement=settings.learning.gate_min_recent_improvement,
            min_recent_examples=settings.learning.gate_min_recent_examples,
        )


@dataclass(frozen=True)
class GateDecision:
    """`reasons` explains every check, passed or failed, in order; `failures` only the failed ones."""

    accepted: bool
    reasons: list[str]
    comparison: dict[str, Any]

    @property
    def failures(self) -> list[str]:
        return [c["reason"] for c in self.comparison.get("checks", []) if not c["passed"]]


@dataclass
class _Checks:
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, check: str, passed: bool, reason: str, **details: Any) -> None:
        self.items.append({"check": check, "passed": passed, "reason": reason, **details})


def decide(champion: HoldoutReport | None, challenger: HoldoutReport, policy: GatePolicy) -> GateDecision:
    """Accept the challenger only if every check passes. `champion` None: there is nothing
    to compare with (the very first model), so only the recall floors apply."""
    checks = _Checks()
    if champion is None:
        checks.add("champion", True, "There is no champion to compare with: only the recall floors apply.")
    else:
        _check_frozen_macro_f1(champion, challenger, policy, checks)
    _check_recall_floors(champion, challenger, policy, checks)
    if champion is not None:
        _check_recent(champion, challenger, policy, checks)
    accepted = all(c["passed"] for c in checks.items)
    comparison = {
        "policy": asdict(policy),
        "champion": champion.to_dict() if champion is not None else None,
        "challenger": challenger.to_dict(),
        "checks": checks.items,
    }
    return GateDecision(accepted, [c["reason"] for c in checks.items], comparison)


def _check_frozen_macro_f1(
    champion: HoldoutReport, challenger: HoldoutReport, policy: GatePolicy, checks: _Checks
) -> None:
    for task in sorted(champion.frozen):
        champ = champion.frozen[task].macro_f1
        if task not in challenger.frozen:
            checks.add(
                "frozen_macro_f1",
                False,
                f"Frozen holdout, {task}: the challenger was not evaluated on this task "
                f"(champion macro-F1 {champ:.4f}); a model must cover every task the champion covers.",
                task=task,
            )
            continue
        chall = challenger.frozen[task].macro_f1
        drop = champ - chall
        passed = drop <= policy.macro_f1_tolerance + EPSILON
        if abs(drop) <= EPSILON:
            verdict = f"equals the champion's {champ:.4f}"
        elif drop < 0:
            verdict = f"is {-drop:.4f} above the champion's {champ:.4f}"
        elif passed:
            verdict = (
                f"is {drop:.4f} below the champion's {champ:.4f}, "
                f"within the tolerance of {policy.macro_f1_tolerance:.4f}"
            )
        else:
            verdict = (
                f"is {drop:.4f} below the champion's {champ:.4f}, "
                f"more than the tolerance of {policy.macro_f1_tolerance:.4f}"
            )
        checks.add(
            "frozen_macro_f1",
            passed,
            f"Frozen holdout, {task}: challenger macro-F1 {chall:.4f} {verdict} "
            f"(n={challenger.frozen[task].n}).",
            task=task,
            champion=champ,
            challenger=chall,
            tolerance=policy.macro_f1_tolerance,
        )


def _check_recall_floors(
    champion: HoldoutReport | None, challenger: HoldoutReport, policy: GatePolicy, checks: _Checks
) -> None:
    for task in sorted(challenger.frozen):
        metrics = challenger.frozen[task]
        champ_recall = champion.frozen[task].per_class_recall if champion and task in champion.frozen else {}
        below: list[str] = []
        excused: list[str] = []
        for label, recall in sorted(metrics.per_class_recall.items()):
            floor = policy.floor_for(task, label)
            if recall + EPSILON >= floor:
                continue
            before = champ_recall.get(label)
            if before is not None and before < floor and recall + EPSILON >= before:
                excused.append(f"{label} {recall:.3f} (champion {before:.3f})")
            else:
                was = f", champion {before:.3f}" if before is not None else ""
                below.append(f"{label} {recall:.3f} < floor {floor:.3f}{was}")
        if below:
            checks.add(
                "recall_floor",
                False,
                f"Frozen holdout, {task}: per-class recall below its floor for {len(below)} class(es): "
                + "; ".join(below)
                + ".",
                task=task,
                below=below,
            )
        else:
            lowest = min(metrics.per_class_recall.items(), key=lambda kv: kv[1], default=None)
            low = f" (lowest: {lowest[0]} {lowest[1]:.3f})" if lowest is not None else ""
            note = (
                "; below the floor but no worse than the champion: " + "; ".join(excused) if excused else ""
            )
            checks.add(
                "recall_floor",
                True,
                f"Frozen holdout, {task}: every class's recall meets its floor "
                f"(default {policy.recall_floor:.3f}){low}{note}.",
                task=task,
                excused=excused,
            )


def _check_recent(
    champion: HoldoutReport, challenger: HoldoutReport, policy: GatePolicy, checks: _Checks
) -> None:
    tasks = sorted(set(champion.recent) & set(challenger.recent))
    sizes = {t: challenger.recent[t].n for t in tasks}
    enough = [t for t in tasks if sizes[t] >= policy.min_recent_examples]
    if enough:
        champ = sum(champion.recent[t].macro_f1 for t in enough) / len(enough)
        chall = sum(challenger.recent[t].macro_f1 for t in enough) / len(enough)
        gain = chall - champ
        passed = gain > policy.min_recent_improvement + EPSILON
        per_task = ", ".join(
            f"{t} {challenger.recent[t].macro_f1:.4f} vs {champion.recent[t].macro_f1:.4f} (n={sizes[t]})"
            for t in enough
        )
        need = (
            "strictly better"
            if policy.min_recent_improvement == 0
            else f"more than {policy.min_recent_improvement:.4f} better"
        )
        verdict = "improves on" if passed else "does not improve enough on"
        checks.add(
            "recent_improvement",
            passed,
            f"Recent holdout: challenger mean macro-F1 {chall:.4f} {verdict} the champion's {champ:.4f} "
            f"(change {gain:+.4f}; it must be {need}; {per_task}).",
            tasks=enough,
            champion=champ,
            challenger=chall,
        )
        return
    present = [t for t in tasks if sizes[t] > 0]
    if not present:
        checks.add(
            "recent_improvement",
            True,
            "Recent holdout: empty (no analyst labels held out yet), so improvement cannot be "
            "measured; nothing to check.",
        )
        return
    regressions = [
        t for t in present if challenger.recent[t].macro_f1 + EPSILON < champion.recent[t].macro_f1
    ]
    per_task = ", ".join(
        f"{t} {challenger.recent[t].macro_f1:.4f} vs {champion.recent[t].macro_f1:.4f} (n={sizes[t]})"
        for t in present
    )
    small = (
        f"Recent holdout: too small to measure improvement (fewer than {policy.min_recent_examples} "
        "labels per task), so only no regression is required"
    )
    if regressions:
        checks.add(
            "recent_no_regression",
            False,
            f"{small}, and the challenger's macro-F1 is lower on {', '.join(regressions)} ({per_task}).",
            regressions=regressions,
        )
    else:
        checks.add("recent_no_regression", True, f"{small}: no regression ({per_task}).")
