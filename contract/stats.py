"""The statistics every floor reports the same way: an accuracy with its Wilson interval,
McNemar's test on paired answers, and the confidence threshold that reaches a target accuracy.

On the ground floor because the exporter (the `unsure` threshold), fine-tuning (before/after on
held-out items), the report and the service's canary all state these numbers, and a reader must
be able to compare them. Arrays in, numbers out; the distributions are scipy's.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927): unlike the normal
    approximation it stays inside [0, 1] and keeps its coverage near 0 and 1."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)


def accuracy_with_interval(correct: np.ndarray) -> dict:
    """Accuracy of per-item correctness and its 95% Wilson interval."""
    k, n = int(np.sum(correct)), len(correct)
    low, high = wilson_interval(k, n)
    return {"n": n, "correct": k, "accuracy": k / n, "ci95": [low, high]}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test on paired correctness: the exact two-sided binomial p-value on the
    discordant pairs, and the continuity-corrected chi-square beside it."""
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    a_only = int(np.sum(correct_a & ~correct_b))
    b_only = int(np.sum(~correct_a & correct_b))
    n = a_only + b_only
    if n == 0:  # the two agree on every item: nothing to test
        return {"a_only": 0, "b_only": 0, "p_exact": 1.0, "chi2": 0.0, "p_chi2": 1.0}
    chi2 = (abs(a_only - b_only) - 1) ** 2 / n
    return {
        "a_only": a_only,
        "b_only": b_only,
        "p_exact": min(1.0, float(stats.binomtest(min(a_only, b_only), n, 0.5).pvalue)),
        "chi2": float(chi2),
        "p_chi2": float(stats.chi2.sf(chi2, 1)),
    }


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Accuracy of the k most confident answers for every k: coverage k/n, accuracy there, and
    the confidence threshold that keeps them. Ties in confidence are kept together."""
    confidence, correct = np.asarray(confidence), np.asarray(correct)
    order = np.argsort(-confidence, kind="stable")
    conf_sorted = confidence[order]
    hits = np.cumsum(correct[order])
    k = np.arange(1, len(order) + 1)
    # only cut where the next confidence differs, so a threshold keeps whole tie groups
    last_of_group = np.r_[conf_sorted[1:] != conf_sorted[:-1], True]
    aurc = float(np.mean(1 - hits / k))
    k, hits, thresholds = k[last_of_group], hits[last_of_group], conf_sorted[last_of_group]
    return {"coverage": k / len(order), "accuracy": hits / k, "threshold": thresholds, "aurc": aurc}


def threshold_for_accuracy(confidence: np.ndarray, correct: np.ndarray, target: float) -> float | None:
    """The lowest confidence threshold whose kept answers (confidence ≥ it) are at least `target`
    correct, i.e. the one keeping the most answers; None when no threshold reaches the target
    (not even the most confident tie group): the caller decides what that means."""
    if not 0 < target <= 1:
        raise ValueError(f"target accuracy must be in (0, 1], got {target!r}")
    curve = risk_coverage(confidence, correct)
    reached = np.flatnonzero(curve["accuracy"] >= target)
    return float(curve["threshold"][reached[-1]]) if len(reached) else None
