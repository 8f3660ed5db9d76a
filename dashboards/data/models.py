"""The model registry as the Models page shows it: versions, their metrics, gate decisions.

Read-only here; promotion and rollback go through `services.learning.registry` (see
`dashboards.actions`), which owns the invariant "exactly one champion".

Metrics are stored as the JSON the model directory carries; its exact nesting differs by
how a version came to be (bootstrap training, retraining with holdout evaluations), so
`find_reports` looks for classification reports (`bert_core.metrics.classification_report`
output: accuracy, macro_f1, per_class, confusion_matrix) wherever they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.storage.learning_models import GateDecisionRow, ModelVersionRow, RetrainRunRow

MAX_DEPTH = 6


@dataclass(frozen=True, slots=True)
class VersionView:
    version: str
    parent: str | None
    status: str
    created_at: datetime
    status_changed_at: datetime
    data_hash: str
    sha256: str
    path: str
    note: str | None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GateView:
    id: int
    run_id: int | None
    challenger_version: str
    champion_version: str | None
    accepted: bool
    reasons: tuple[str, ...]
    comparison: dict[str, Any]
    decided_at: datetime


def is_report(value: Any) -> bool:
    return isinstance(value, Mapping) and "accuracy" in value and "per_class" in value


def find_reports(metrics: Any, *, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, report) for every classification report nested in `metrics`, e.g.
    ("dev / sentiment", {...}); lists (training history) are not searched."""
    if depth > MAX_DEPTH or not isinstance(metrics, Mapping):
        return
    for name, value in metrics.items():
        path = f"{prefix} / {name}" if prefix else str(name)
        if is_report(value):
            yield path, dict(value)
        elif isinstance(value, Mapping):
            yield from find_reports(value, prefix=path, depth=depth + 1)


def summary_row(version: VersionView) -> dict[str, Any]:
    """One table row per version: accuracy and macro-F1 of each report found."""
    row: dict[str, Any] = {
        "version": version.version,
        "status": version.status,
        "parent": version.parent,
        "created_at": version.created_at,
        "status_changed_at": version.status_changed_at,
    }
    for path, report in find_reports(version.metrics):
        row[f"{path} acc"] = report.get("accuracy")
        row[f"{path} macro-F1"] = report.get("macro_f1")
    return row


def per_class_table(report: Mapping[str, Any]) -> pd.DataFrame:
    rows = [
        (name, values.get("precision"), values.get("recall"), values.get("f1"), values.get("support"))
        for name, values in (report.get("per_class") or {}).items()
        if isinstance(values, Mapping)
    ]
    return pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"])


def confusion_frame(report: Mapping[str, Any]) -> pd.DataFrame | None:
    """Rows = true class, columns = predicted; None if the report has no (consistent) matrix."""
    matrix = report.get("confusion_matrix")
    labels = report.get("labels") or list((report.get("per_class") or {}).keys())
    if not isinstance(matrix, list) or not matrix or len(matrix) != len(labels):
        return None
    if any(not isinstance(r, list) or len(r) != len(labels) for r in matrix):
        return None
    return pd.DataFrame(matrix, index=[f"true {x}" for x in labels], columns=[f"pred {x}" for x in labels])


def list_versions(session: Session, *, limit: int = 200) -> list[VersionView]:
    rows = session.scalars(
        select(ModelVersionRow)
        .order_by(ModelVersionRow.created_at.desc(), ModelVersionRow.version)
        .limit(limit)
    )
    return [
        VersionView(
            r.version,
            r.parent,
            r.status,
            r.created_at,
            r.status_changed_at,
            r.data_hash,
            r.sha256,
            r.path,
            r.note,
            dict(r.metrics or {}),
        )
        for r in rows
    ]


def gate_decisions(session: Session, *, limit: int = 50) -> list[GateView]:
    rows = session.scalars(
        select(GateDecisionRow)
        .order_by(GateDecisionRow.decided_at.desc(), GateDecisionRow.id.desc())
        .limit(limit)
    )
    return [
        GateView(
            r.id,
            r.run_id,
            r.challenger_version,
            r.champion_version,
            r.accepted,
            tuple(str(x) for x in (r.reasons or ())),
            dict(r.comparison or {}),
            r.decided_at,
        )
        for r in rows
    ]


def retrain_runs(session: Session, *, limit: int = 20) -> pd.DataFrame:
    r = RetrainRunRow
    rows = session.execute(
        select(
            r.id,
            r.trigger,
            r.started_at,
            r.finished_at,
            r.status,
            r.reason,
            r.champion_version,
            r.challenger_version,
            r.new_labels,
        )
        .order_by(r.started_at.desc(), r.id.desc())
        .limit(limit)
    ).all()
    return pd.DataFrame(
        [tuple(x) for x in rows],
        columns=[
            "id",
            "trigger",
            "started_at",
            "finished_at",
            "status",
            "reason",
            "champion",
            "challenger",
            "new_labels",
        ],
    )
