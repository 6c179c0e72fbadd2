"""Confidence calibration: temperature scaling fitted on validation, the expected calibration
error, and the `unsure` threshold a model records.

On the ground floor because what it computes is part of the model file (`val_ece`, `test_ece`,
`unsure_threshold`): training's exporter and quantizer write those entries with it, and the report
computes its calibration figures with these same functions. numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from contract import metadata as meta
from contract.runtime import softmax as contract_softmax
from contract.stats import threshold_for_accuracy

# Golden-section search on log T: NLL(softmax(z / T)) is convex in 1/T, hence unimodal in log T.
_GOLDEN = (math.sqrt(5) - 1) / 2
TEMPERATURE_BOUNDS = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The contract's softmax, in float64 for statistics."""
    return contract_softmax(logits, temperature, dtype=np.float64)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of softmax(logits / T) against the labels."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, tolerance: float = 1e-5) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017)."""
    if len(logits) == 0 or len(logits) != len(labels):
        raise ValueError(f"fit_temperature needs as many logits as labels (> 0), got {len(logits)} and {len(labels)}")
    lo, hi = math.log(TEMPERATURE_BOUNDS[0]), math.log(TEMPERATURE_BOUNDS[1])

    def nll(log_t: float) -> float:
        return negative_log_likelihood(logits, labels, math.exp(log_t))

    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > tolerance:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


def calibration_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Equal-width confidence bins (lo, hi] as in Guo et al. 2017: count, accuracy and mean
    confidence per bin, and the expected calibration error (bin-weighted |acc - conf|)."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    acc_sum = np.bincount(which, weights=correct, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(count > 0, acc_sum / count, 0.0)
        conf = np.where(count > 0, conf_sum / count, 0.0)
    ece = float(np.sum(count / len(labels) * np.abs(acc - conf)))
    return {"bins": bins, "count": count.tolist(), "accuracy": acc.tolist(), "confidence": conf.tolist(), "ece": ece}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    return calibration_bins(probabilities, labels, bins)["ece"]


def unsure_threshold(probabilities: np.ndarray, labels: np.ndarray, target_accuracy: float) -> float:
    """The confidence at and above which answers were at least `target_accuracy` correct, keeping
    the most answers (contract/stats.py). When no confidence reaches the target, not even the
    most confident tie group, it is the top confidence: only answers that sure count as sure."""
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    threshold = threshold_for_accuracy(confidence, correct, target_accuracy)
    return float(confidence.max()) if threshold is None else threshold


UNSURE_TARGET_ACCURACY = 0.99  # answers at or above the recorded threshold were this accurate on validation


def calibration_metadata(
    val_probabilities: np.ndarray, val_labels: np.ndarray, test_probabilities: np.ndarray, test_labels: np.ndarray
) -> dict[str, str]:
    """The calibration entries of a model's metadata, from the probabilities the file itself serves:
    ECE on validation and test, and the `unsure` threshold chosen on validation."""
    threshold = unsure_threshold(val_probabilities, val_labels, UNSURE_TARGET_ACCURACY)
    return {
        meta.VAL_ECE: f"{expected_calibration_error(val_probabilities, val_labels):.4f}",
        meta.TEST_ECE: f"{expected_calibration_error(test_probabilities, test_labels):.4f}",
        # rounded down, so every answer the threshold was chosen for stays above it
        meta.UNSURE_THRESHOLD: f"{math.floor(threshold * 1e4) / 1e4:.4f}",
        meta.UNSURE_TARGET_ACCURACY: str(UNSURE_TARGET_ACCURACY),
    }
