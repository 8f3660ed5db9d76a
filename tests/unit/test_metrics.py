"""Classification metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from bert_core import classification_report, expected_calibration_error, format_report
from bert_core.metrics import confusion_matrix

# Truth / prediction pairs, 10 rows, classes a/b/c:
#   true a: a a b      -> row [2 1 0]
#   true b: b c a      -> row [1 1 1]
#   true c: c c a c    -> row [1 0 3]
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2, 1]
Y_PRED = [0, 0, 1, 1, 2, 2, 2, 0, 2, 0]
NAMES = ["a", "b", "c"]


def test_confusion_matrix() -> None:
    assert confusion_matrix(Y_TRUE, Y_PRED, 3).tolist() == [[2, 1, 0], [1, 1, 1], [1, 0, 3]]


def test_classification_report_by_hand() -> None:
    report = classification_report(Y_TRUE, Y_PRED, NAMES)
    assert report["n"] == 10
    assert report["accuracy"] == pytest.approx(6 / 10)
    assert report["confusion_matrix"] == [[2, 1, 0], [1, 1, 1], [1, 0, 3]]
    assert report["labels"] == NAMES
    # Predicted column sums 4/2/4, true row sums 3/3/4.
    a, b, c = (report["per_class"][n] for n in NAMES)
    assert a["precision"] == pytest.approx(2 / 4)
    assert a["recall"] == pytest.approx(2 / 3)
    assert a["f1"] == pytest.approx(4 / 7)  # 2 * 1/2 * 2/3 / (1/2 + 2/3)
    assert b["precision"] == pytest.approx(1 / 2)
    assert b["recall"] == pytest.approx(1 / 3)
    assert b["f1"] == pytest.approx(2 / 5)
    assert c["precision"] == pytest.approx(3 / 4)
    assert c["recall"] == pytest.approx(3 / 4)
    assert c["f1"] == pytest.approx(3 / 4)
    assert [a["support"], b["support"], c["support"]] == [3, 3, 4]
    assert report["macro_f1"] == pytest.approx((4 / 7 + 2 / 5 + 3 / 4) / 3)  # 241/420
    assert "ece" not in report


def test_macro_f1_ignores_classes_absent_from_truth_and_predictions() -> None:
    report = classification_report(Y_TRUE, Y_PRED, [*NAMES, "never"])
    assert report["per_class"]["never"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["macro_f1"] == pytest.approx(241 / 420)


def test_predicted_but_absent_class_counts_in_macro_f1() -> None:
    # Class 2 is predicted once but never true: its F1 is 0 and it is averaged in.
    report = classification_report([0, 0, 1, 1], [0, 0, 1, 2], ["x", "y", "z"])
    # x: F1 1; y: precision 1, recall 1/2 -> F1 2/3; z: F1 0.
    assert report["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert report["accuracy"] == pytest.approx(3 / 4)


def test_perfect_predictions() -> None:
    report = classification_report([0, 1, 2, 1], [0, 1, 2, 1], NAMES)
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == 1.0


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="3 true labels but 2 predictions"):
        classification_report([0, 1, 2], [0, 1], NAMES)


def test_expected_calibration_error_by_hand() -> None:
    # 5 bins of width 0.2. Confidence / correct:
    #   0.95 correct -> bin (0.8, 1.0]: |1 - 0.95|      * 1/4 = 0.0125
    #   0.75 wrong   \
    #   0.65 correct -> bin (0.6, 0.8]: |0.5 - 0.70|    * 2/4 = 0.1
    #   0.50 correct -> bin (0.4, 0.6]: |1 - 0.5|       * 1/4 = 0.125
    probs = np.array([[0.95, 0.05], [0.75, 0.25], [0.35, 0.65], [0.5, 0.5]])
    y_true = [0, 1, 1, 0]
    assert expected_calibration_error(y_true, probs, n_bins=5) == pytest.approx(0.2375)


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin() -> None:
    # Bins (0, 0.5] and (0.5, 1]. 0.5 (wrong) is alone in the lower bin: 0.5 * 1/3;
    # 1.0 and 0.9 (both right) share the upper bin: |1 - 0.95| * 2/3. Total 0.2.
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.1, 0.9]])
    assert expected_calibration_error([1, 0, 1], probs, n_bins=2) == pytest.approx(0.2)


def test_expected_calibration_error_of_a_calibrated_bin_is_zero() -> None:
    # All in one bin, accuracy 3/4 = mean confidence (0.9 + 0.8 + 0.7 + 0.6) / 4.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert expected_calibration_error([0, 1, 1, 1], probs, n_bins=2) == pytest.approx(0.0)
    assert expected_calibration_error([], np.zeros((0, 2))) == 0.0


def test_report_includes_ece_when_probabilities_are_given() -> None:
    probs = np.array([[0.95, 0.05], [0.75, 0.25], [0.35, 0.65], [0.5, 0.5]])
    report = classification_report([0, 1, 1, 0], probs.argmax(axis=1).tolist(), ["x", "y"], probs)
    # Default 15 bins: 0.95 -> (14/15, 1], 0.75 -> (0.733, 0.8], 0.65 -> (0.6, 0.667],
    # 0.5 -> (0.467, 0.533]: one row per bin, so ECE = mean |correct - confidence|
    # = (0.05 + 0.75 + 0.35 + 0.5) / 4.
    assert report["ece"] == pytest.approx((0.05 + 0.75 + 0.35 + 0.5) / 4)


def test_format_report_contains_names_and_numbers() -> None:
    names = ["Fed / Central Banks", "Energy / Oil", "Dividend"]
    report = classification_report(Y_TRUE, Y_PRED, names)
    text = format_report("topic", report)
    for name in names:
        assert name in text
    assert "topic" in text
    assert "accuracy=0.6000" in text
    assert f"macro-F1={241 / 420:.4f}" in text
    # The confusion matrix rows are printed.
    assert "    2     1     0" in text
    assert "    1     0     3" in text
