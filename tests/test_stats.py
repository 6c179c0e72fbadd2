"""contract.stats against published values and independent re-computations (brute force, counting)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contract import stats
from contract.calibration import unsure_threshold

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_by_inversion(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson interval as its definition: every p the score test does not reject,
    |k - n·p| ≤ z·sqrt(n·p·(1 - p)), found on a grid of a million points."""
    p = np.linspace(0, 1, 1_000_001)
    kept = p[(successes - n * p) ** 2 <= z * z * n * p * (1 - p)]
    return float(kept.min()), float(kept.max())


def mcnemar_p_by_counting(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p: twice the chance of a split at least this uneven, capped at 1."""
    n = a_only + b_only
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2**n) if n else 1.0


def threshold_by_brute_force(confidence: np.ndarray, correct: np.ndarray, target: float) -> float | None:
    """Try every distinct confidence as the threshold; keep the lowest whose kept answers reach the target."""
    reaching = [t for t in np.unique(confidence) if correct[confidence >= t].mean() >= target]
    return float(min(reaching)) if reaching else None


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553 to 0.3662
    lo, hi = stats.wilson_interval(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    assert stats.wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(ValueError, match="n must be positive"):
        stats.wilson_interval(0, 0)


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (3, 10), (10, 10), (37, 40), (981, 1000)])
def test_wilson_interval_is_every_proportion_the_score_test_keeps(successes, n):
    assert stats.wilson_interval(successes, n) == pytest.approx(wilson_by_inversion(successes, n), abs=2e-6)


def test_accuracy_with_interval_counts_and_bounds():
    result = stats.accuracy_with_interval(np.array([True] * 37 + [False] * 3))
    assert (result["n"], result["correct"], result["accuracy"]) == (40, 37, 0.925)
    assert result["ci95"] == pytest.approx(wilson_by_inversion(37, 40), abs=2e-6)


def test_mcnemar_exact_p_value_is_the_two_sided_binomial():
    a = np.array([1] * 10 + [0] * 2 + [1] * 50, dtype=bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 50, dtype=bool)
    result = stats.mcnemar(a, b)
    assert (result["a_only"], result["b_only"]) == (10, 2)
    assert result["p_exact"] == pytest.approx(mcnemar_p_by_counting(10, 2))  # 0.0386
    assert result["chi2"] == pytest.approx((10 - 2 - 1) ** 2 / 12)
    assert stats.mcnemar(a, a) == {"a_only": 0, "b_only": 0, "p_exact": 1.0, "chi2": 0.0, "p_chi2": 1.0}
    assert stats.mcnemar(a[:12], b[:12])["p_exact"] == stats.mcnemar(b[:12], a[:12])["p_exact"]


def test_risk_coverage_keeps_ties_together():
    curve = stats.risk_coverage(np.array([0.9, 0.9, 0.5]), np.array([1.0, 0.0, 1.0]))
    assert curve["coverage"].tolist() == pytest.approx([2 / 3, 1.0])
    assert curve["accuracy"].tolist() == pytest.approx([0.5, 2 / 3])
    assert curve["threshold"].tolist() == [0.9, 0.5]


def test_threshold_for_accuracy_keeps_the_largest_set_that_reaches_the_target():
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0], dtype=float)
    assert stats.threshold_for_accuracy(conf, correct, 1.0) == 0.9
    assert stats.threshold_for_accuracy(conf, correct, 0.8) == 0.7  # 4 of 5 right
    with pytest.raises(ValueError, match=r"target accuracy must be in \(0, 1\], got 1.5"):
        stats.threshold_for_accuracy(conf, correct, 1.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_for_accuracy_matches_trying_every_threshold(seed):
    rng = np.random.default_rng(seed)
    confidence = np.round(rng.uniform(0.2, 1.0, size=400), 2)  # rounded: many ties
    correct = rng.uniform(size=400) < confidence  # the more confident, the more often right
    for target in (0.7, 0.9, 0.97, 1.0):
        assert stats.threshold_for_accuracy(confidence, correct, target) == threshold_by_brute_force(
            confidence, correct, target
        ), target


def test_when_no_threshold_reaches_the_target_there_is_none_and_unsure_keeps_only_the_top():
    conf = np.array([0.9, 0.9, 0.8, 0.6])
    wrong_at_the_top = np.array([True, False, True, False])  # the top tie group is 50% right
    assert stats.threshold_for_accuracy(conf, wrong_at_the_top, 0.99) is None
    probabilities = np.stack([conf, 1 - conf], axis=1)
    labels = np.where(wrong_at_the_top, 0, 1)
    # the recorded `unsure` threshold then marks everything below the top confidence unsure
    assert unsure_threshold(probabilities, labels, 0.99) == 0.9
    assert unsure_threshold(probabilities, labels, 0.5) == 0.6  # reached: the usual answer
