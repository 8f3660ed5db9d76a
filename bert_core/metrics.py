"""Classification metrics computed from labels and probabilities, with no framework."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def expected_calibration_error(y_true: Sequence[int], probs: np.ndarray, *, n_bins: int = 15) -> float:
    """Top-label ECE: mean |accuracy - confidence| over equal-width confidence bins, by weight."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; a confidence of exactly 0 goes to bin 0.
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def classification_report(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    label_names: Sequence[str],
    probs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix, ECE.

    Macro-F1 averages over classes present in the truth or the predictions, as
    scikit-learn does, so a class never seen in a small set does not count as F1 = 0.
    """
    n = len(label_names)
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    matrix = confusion_matrix(y_true, y_pred, n)
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(n), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    seen = (actual + predicted) > 0
    total = int(matrix.sum())
    report: dict[str, Any] = {
        "n": total,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(actual[i]),
            }
            for i, name in enumerate(label_names)
        },
        "labels": list(label_names),
        "confusion_matrix": matrix.tolist(),
    }
    if probs is not None:
        report["ece"] = expected_calibration_error(y_true, probs)
    return report


def format_report(task: str, report: dict[str, Any]) -> str:
    """A human-readable table of one task's report."""
    width = max(len(name) for name in report["labels"]) + 2
    lines = [
        f"== {task}: n={report['n']}  accuracy={report['accuracy']:.4f}  "
        f"macro-F1={report['macro_f1']:.4f}" + (f"  ECE={report['ece']:.4f}" if "ece" in report else ""),
        f"{'class':<{width}}{'prec':>8}{'recall':>8}{'f1':>8}{'support':>9}",
    ]
    for name, row in report["per_class"].items():
        lines.append(
            f"{name:<{width}}{row['precision']:>8.3f}{row['recall']:>8.3f}"
            f"{row['f1']:>8.3f}{row['support']:>9d}"
        )
    lines.append("confusion matrix (rows = true, columns = predicted, in class order above):")
    lines.extend("  " + " ".join(f"{v:>5d}" for v in row) for row in report["confusion_matrix"])
    return "\n".join(lines)
