"""report.metrics against sklearn, scipy and independent re-computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from contract import calibration
from contract.runtime import softmax
from report import metrics


def noisy_predictions(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, logits and predictions of a fake classifier that is right about 80% of the time."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(0, 1, size=(n, k))
    logits[np.arange(n), labels] += rng.choice([0.0, 2.5], size=n, p=[0.2, 0.8]) + 0.3
    return labels, logits, logits.argmax(1)


def test_classification_summary_matches_sklearn():
    labels, _, pred = noisy_predictions(3000, 10, seed=1)
    pred[pred == 3] = 4  # class 3 never predicted: zero_division handling is checked too
    s = metrics.classification_summary(labels, pred, 10, resamples=200, seed=0)
    ref = classification_report(labels, pred, output_dict=True, zero_division=0)
    assert s["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert s["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro", zero_division=0))
    assert s["confusion"] == confusion_matrix(labels, pred).tolist()
    for c, row in enumerate(s["per_class"]):
        for key, ref_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert row[key] == pytest.approx(ref[str(c)][ref_key]), (c, key)
        assert row["support"] == ref[str(c)]["support"]


def test_bootstrap_intervals_are_reproducible_for_a_seed_and_contain_the_estimate():
    labels, _, pred = noisy_predictions(2000, 10, seed=2)
    a = metrics.classification_summary(labels, pred, 10, resamples=300, seed=7)
    b = metrics.classification_summary(labels, pred, 10, resamples=300, seed=7)
    c = metrics.classification_summary(labels, pred, 10, resamples=300, seed=8)
    assert a == b
    assert a["accuracy_ci"] != c["accuracy_ci"]
    intervals = [(a["accuracy"], a["accuracy_ci"]), (a["macro_f1"], a["macro_f1_ci"])]
    for row in a["per_class"]:
        intervals += [(row[m], row[f"{m}_ci"]) for m in ("precision", "recall", "f1")]
    for point, (lo, hi) in intervals:
        assert lo <= point <= hi
    lo, hi = a["accuracy_ci"]
    assert 0.01 < hi - lo < 0.08  # about ±2 points for n = 2000 near 80% accuracy


def ece_by_loops(probs: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """Guo et al. 2017's definition written out plainly: bins (lo, hi] of the max probability."""
    conf = probs.max(1)
    right = probs.argmax(1) == labels
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [i for i in range(len(conf)) if lo < conf[i] <= hi]
        if members:
            acc = np.mean([right[i] for i in members])
            mean_conf = np.mean([conf[i] for i in members])
            total += len(members) / len(conf) * abs(acc - mean_conf)
    return total


def test_ece_matches_an_independent_computation():
    labels, logits, _ = noisy_predictions(1500, 10, seed=3)
    probs = softmax(logits, dtype=np.float64)
    assert calibration.expected_calibration_error(probs, labels, 15) == pytest.approx(
        ece_by_loops(probs, labels, 15), abs=1e-12
    )
    bins = calibration.calibration_bins(probs, labels, 15)
    assert sum(bins["count"]) == len(labels)


def test_selective_at_keeps_the_answers_at_or_above_the_threshold():
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0], dtype=float)
    at = metrics.selective_at(conf, correct, 0.9)
    assert at == {"coverage": 0.5, "accuracy": 1.0}


def test_top_confused_pairs_are_the_largest_off_diagonal_cells():
    cm = np.array([[50, 7, 1], [2, 40, 9], [0, 3, 60]])
    pairs = metrics.top_confused_pairs(cm, 2)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [(1, 2, 9), (0, 1, 7)]


def test_corruption_error_by_hand():
    # severity 0 (clean), then 1..5
    model = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # errors 0.2..0.6: sum 2.0; over clean error 0.1: 1.5
    baseline = [0.8, 0.6, 0.5, 0.4, 0.3, 0.2]  # errors 0.4..0.8: sum 3.0; over clean error 0.2: 2.0
    assert metrics.corruption_error(model, baseline) == pytest.approx({"ce": 2 / 3, "relative_ce": 0.75})
    flat = [0.9] * 6  # errors 0.1 x 5: sum 0.5, no increase over clean
    weak = [0.8] + [0.55] * 5  # errors 0.45 x 5: sum 2.25; over clean 0.2: 1.25
    assert metrics.corruption_error(flat, weak) == pytest.approx({"ce": 0.5 / 2.25, "relative_ce": 0.0})
    rows = [metrics.corruption_error(model, baseline), metrics.corruption_error(flat, weak)]
    mce, relative = metrics.mean_corruption_error(rows)
    assert mce == pytest.approx((2 / 3 + 2 / 9) / 2)  # 4/9
    assert relative == pytest.approx((0.75 + 0.0) / 2)


def test_relative_corruption_error_is_undefined_when_the_baseline_barely_degrades():
    steady = [0.8] + [0.799] * 5  # summed increase 0.005 <= 0.01
    row = metrics.corruption_error([0.9, 0.5, 0.5, 0.5, 0.5, 0.5], steady)
    assert row["ce"] == pytest.approx(2.5 / 1.005)
    assert row["relative_ce"] is None
    mce, relative = metrics.mean_corruption_error([row, {"ce": 1.0, "relative_ce": 0.5}])
    assert mce == pytest.approx((2.5 / 1.005 + 1) / 2)
    assert relative is None
