"""The promotion gate as a pure function: each rule accepts and rejects with its numbers."""

from __future__ import annotations

import json

import pytest

from services.learning.gate import GateDecision, GatePolicy, HoldoutReport, TaskMetrics, decide
from services.settings import Settings


def metrics(f1: float, recall: dict[str, float] | None = None, n: int = 200) -> TaskMetrics:
    recall = recall if recall is not None else {"bearish": 0.8, "bullish": 0.8, "neutral": 0.9}
    return TaskMetrics(accuracy=f1 + 0.05, macro_f1=f1, per_class_recall=recall, n=n)


def report(
    frozen_f1: float = 0.80,
    recent_f1: float | None = 0.70,
    *,
    recall: dict[str, float] | None = None,
    recent_n: int = 100,
) -> HoldoutReport:
    recent = {"sentiment": metrics(recent_f1, n=recent_n)} if recent_f1 is not None else {}
    return HoldoutReport(frozen={"sentiment": metrics(frozen_f1, recall)}, recent=recent)


POLICY = GatePolicy()  # tolerance 0.01, floor 0.2, strictly better on recent, 30 recent labels


def failed_checks(decision: GateDecision) -> list[str]:
    return [c["check"] for c in decision.comparison["checks"] if not c["passed"]]


def test_accepts_a_better_challenger_and_explains_every_check() -> None:
    decision = decide(report(0.80, 0.70), report(0.795, 0.74), POLICY)
    assert decision.accepted, decision.reasons
    assert decision.failures == []
    assert decision.reasons == [
        "Frozen holdout, sentiment: challenger macro-F1 0.7950 is 0.0050 below the champion's 0.8000, "
        "within the tolerance of 0.0100 (n=200).",
        "Frozen holdout, sentiment: every class's recall meets its floor (default 0.200) "
        "(lowest: bearish 0.800).",
        "Recent holdout: challenger mean macro-F1 0.7400 improves on the champion's 0.7000 "
        "(change +0.0400; it must be strictly better; sentiment 0.7400 vs 0.7000 (n=100)).",
    ]
    assert json.loads(json.dumps(decision.comparison))["policy"]["macro_f1_tolerance"] == 0.01
    assert decision.comparison["challenger"]["recent"]["sentiment"]["macro_f1"] == 0.74


def test_rejects_a_frozen_macro_f1_drop_beyond_the_tolerance() -> None:
    decision = decide(report(0.80, 0.70), report(0.785, 0.90), POLICY)
    assert not decision.accepted
    assert failed_checks(decision) == ["frozen_macro_f1"]
    assert decision.failures == [
        "Frozen holdout, sentiment: challenger macro-F1 0.7850 is 0.0150 below the champion's 0.8000, "
        "more than the tolerance of 0.0100 (n=200)."
    ]


def test_a_drop_of_exactly_the_tolerance_passes() -> None:
    assert decide(report(0.71, 0.5), report(0.70, 0.6), POLICY).accepted


def test_rejects_a_class_below_its_recall_floor() -> None:
    low = {"bearish": 0.15, "bullish": 0.8, "neutral": 0.9}
    decision = decide(report(0.80, 0.70), report(0.82, 0.75, recall=low), POLICY)
    assert not decision.accepted and failed_checks(decision) == ["recall_floor"]
    assert decision.failures == [
        "Frozen holdout, sentiment: per-class recall below its floor for 1 class(es): "
        "bearish 0.150 < floor 0.200, champion 0.800."
    ]


def test_per_class_floors_override_the_default() -> None:
    low = {"bearish": 0.15, "bullish": 0.8, "neutral": 0.9}
    lenient = GatePolicy(recall_floors={"sentiment": {"bearish": 0.1}})
    assert decide(report(0.80, 0.70), report(0.82, 0.75, recall=low), lenient).accepted
    strict = GatePolicy(recall_floors={"sentiment": {"neutral": 0.95}})
    champ = report(0.80, 0.70, recall={"bearish": 0.8, "bullish": 0.8, "neutral": 0.97})
    decision = decide(champ, report(0.82, 0.75), strict)
    assert not decision.accepted and "neutral 0.900 < floor 0.950" in decision.failures[0]


def test_a_class_the_champion_already_fails_is_excused_unless_it_gets_worse() -> None:
    weak = {"bearish": 0.10, "bullish": 0.8, "neutral": 0.9}
    same = decide(report(0.80, 0.70, recall=weak), report(0.80, 0.75, recall=weak), POLICY)
    assert same.accepted
    assert "below the floor but no worse than the champion: bearish 0.100 (champion 0.100)" in same.reasons[1]
    worse = {"bearish": 0.05, "bullish": 0.8, "neutral": 0.9}
    decision = decide(report(0.80, 0.70, recall=weak), report(0.80, 0.75, recall=worse), POLICY)
    assert not decision.accepted
    assert "bearish 0.050 < floor 0.200, champion 0.100" in decision.failures[0]


def test_rejects_no_improvement_on_the_recent_holdout() -> None:
    decision = decide(report(0.80, 0.70), report(0.80, 0.70), POLICY)
    assert not decision.accepted and failed_checks(decision) == ["recent_improvement"]
    assert decision.failures == [
        "Recent holdout: challenger mean macro-F1 0.7000 does not improve enough on the champion's 0.7000 "
        "(change +0.0000; it must be strictly better; sentiment 0.7000 vs 0.7000 (n=100))."
    ]
    demanding = GatePolicy(min_recent_improvement=0.05)
    decision = decide(report(0.80, 0.70), report(0.80, 0.74), demanding)
    assert not decision.accepted and "it must be more than 0.0500 better" in decision.failures[0]


def test_empty_recent_holdout_is_said_and_not_held_against_the_challenger() -> None:
    decision = decide(report(0.80, None), report(0.80, None), POLICY)
    assert decision.accepted
    assert decision.reasons[-1] == (
        "Recent holdout: empty (no analyst labels held out yet), so improvement cannot be measured; "
        "nothing to check."
    )


def test_small_recent_holdout_requires_no_regression_only() -> None:
    equal = decide(report(0.80, 0.70, recent_n=5), report(0.80, 0.70, recent_n=5), POLICY)
    assert equal.accepted
    assert equal.reasons[-1] == (
        "Recent holdout: too small to measure improvement (fewer than 30 labels per task), so only no "
        "regression is required: no regression (sentiment 0.7000 vs 0.7000 (n=5))."
    )
    worse = decide(report(0.80, 0.70, recent_n=5), report(0.80, 0.60, recent_n=5), POLICY)
    assert not worse.accepted and failed_checks(worse) == ["recent_no_regression"]
    assert (
        "the challenger's macro-F1 is lower on sentiment (sentiment 0.6000 vs 0.7000 (n=5))"
        in worse.failures[0]
    )


def test_improvement_is_the_mean_over_tasks_with_enough_recent_labels() -> None:
    champ = HoldoutReport(
        frozen={"sentiment": metrics(0.8), "topic": metrics(0.6, {"IPO": 0.5})},
        recent={"sentiment": metrics(0.70, n=50), "topic": metrics(0.50, n=40)},
    )
    chall = HoldoutReport(
        frozen={"sentiment": metrics(0.8), "topic": metrics(0.6, {"IPO": 0.5})},
        recent={"sentiment": metrics(0.68, n=50), "topic": metrics(0.56, n=40)},
    )
    decision = decide(champ, chall, POLICY)
    assert decision.accepted, decision.failures  # (0.68 + 0.56) / 2 = 0.62 > 0.60
    assert "mean macro-F1 0.6200 improves on the champion's 0.6000" in decision.reasons[-1]


def test_a_challenger_missing_a_task_is_rejected() -> None:
    champ = HoldoutReport(frozen={"sentiment": metrics(0.8), "topic": metrics(0.6, {"IPO": 0.5})})
    chall = HoldoutReport(frozen={"sentiment": metrics(0.9)})
    decision = decide(champ, chall, POLICY)
    assert not decision.accepted
    assert decision.failures == [
        "Frozen holdout, topic: the challenger was not evaluated on this task (champion macro-F1 0.6000); "
        "a model must cover every task the champion covers."
    ]


def test_without_a_champion_only_the_floors_apply() -> None:
    assert decide(None, report(0.3, None), POLICY).accepted
    low = {"bearish": 0.0, "bullish": 0.8, "neutral": 0.9}
    decision = decide(None, report(0.6, None, recall=low), POLICY)
    assert not decision.accepted and "bearish 0.000 < floor 0.200." in decision.failures[0]


def test_reports_round_trip_through_json() -> None:
    original = report(0.8, 0.7)
    assert HoldoutReport.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_policy_defaults_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINSENT_GATE_MACRO_F1_TOLERANCE", "0.02")
    monkeypatch.setenv("FINSENT_GATE_RECALL_FLOORS", '{"topic": {"IPO": 0.05}}')
    policy = GatePolicy.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert policy == GatePolicy(macro_f1_tolerance=0.02, recall_floors={"topic": {"IPO": 0.05}})
    with pytest.raises(ValueError, match="recall floors"):
        GatePolicy(recall_floor=1.5)
