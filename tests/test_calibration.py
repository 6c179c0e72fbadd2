"""contract.calibration and the exporter's use of it: the served confidence is calibrated."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_stats import threshold_by_brute_force

from contract.calibration import (
    calibration_bins,
    expected_calibration_error,
    fit_temperature,
    softmax,
    unsure_threshold,
)
from contract.runtime import load_model
from contract.split import stratified_split


def sampled_labels(logits: np.ndarray, temperature: float, seed: int = 0) -> np.ndarray:
    """Labels drawn from softmax(logits / T): a model whose true temperature is T."""
    probabilities = softmax(logits, temperature)
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(len(p), p=p) for p in probabilities])


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with():
    logits = np.random.default_rng(1).normal(scale=4.0, size=(20000, 10))
    for true_t in (0.6, 1.0, 2.5):
        assert fit_temperature(logits, sampled_labels(logits, true_t)) == pytest.approx(true_t, rel=0.05)


def test_fit_temperature_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="as many logits as labels"):
        fit_temperature(np.zeros((3, 10)), np.zeros(2, dtype=int))


def test_temperature_scaling_shrinks_the_calibration_error_of_an_overconfident_model():
    logits = np.random.default_rng(2).normal(scale=4.0, size=(20000, 10))
    labels = sampled_labels(logits, 2.0)  # the raw logits are twice too sharp
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, fit_temperature(logits, labels)), labels)
    assert before > 0.1 and after < 0.02


def test_calibration_bins_count_every_prediction_and_weight_the_gap():
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    labels = np.array([0, 1, 0, 0])
    bins = calibration_bins(probabilities, labels, bins=10)
    assert sum(bins["count"]) == 4
    # bin (0.9, 1.0]: accuracy 0.5 vs confidence 0.95; bin (0.5, 0.6]: 1.0 vs 0.55
    assert bins["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)


def test_unsure_threshold_keeps_the_most_answers_that_reach_the_target():
    confidence = np.array([0.99, 0.98, 0.97, 0.90, 0.80, 0.70])
    correct = np.array([True, True, True, True, False, True])
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.where(correct, 0, 1)
    assert unsure_threshold(probabilities, labels, 1.0) == pytest.approx(0.90)
    assert unsure_threshold(probabilities, labels, 0.8) == pytest.approx(0.70)
    with pytest.raises(ValueError, match="target accuracy"):
        unsure_threshold(probabilities, labels, 1.5)


def test_exported_model_serves_calibrated_confidence_and_records_its_threshold(tiny_model_path, fmnist):
    model = load_model(tiny_model_path)
    meta = model.info.metadata
    temperature, threshold = float(meta["temperature"]), float(meta["unsure_threshold"])
    assert 0.05 <= temperature <= 20 and 0 < threshold <= 1
    config_seed = int(meta["split_seed"])
    val = stratified_split(fmnist.train_labels, 5000, config_seed).val_indices
    probabilities = softmax(model.logits(fmnist.train_images[val].astype(np.float32)[:, None] / 255))
    labels = fmnist.train_labels[val]
    # the temperature is already in the graph: fitting again on the same split finds ~1
    assert fit_temperature(np.log(probabilities), labels) == pytest.approx(1.0, abs=0.02)
    # the threshold the exporter recorded is the one found by trying every validation confidence
    confidence, correct = probabilities.max(1), probabilities.argmax(1) == labels
    expected = threshold_by_brute_force(confidence, correct, 0.99)
    expected = confidence.max() if expected is None else expected  # none reaches 99%: only the top is sure
    assert threshold == pytest.approx(math.floor(expected * 1e4) / 1e4, abs=1.01e-4)  # recorded rounded down
    assert (confidence >= threshold).any()
    assert float(meta["test_ece"]) == pytest.approx(
        expected_calibration_error(
            softmax(model.logits(fmnist.test_images.astype(np.float32)[:, None] / 255)), fmnist.test_labels
        ),
        abs=1e-4,
    )
