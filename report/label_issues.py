"""Likely label errors by confident learning (Northcutt, Jiang & Chuang 2021), through
cleanlab's reference implementation, and a planted-flip check that it finds real ones."""

from __future__ import annotations

import numpy as np


def find_label_issues(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices of likely mislabelled examples, most likely first.

    `probabilities` must be out-of-sample (the test set is, for a trained model). The
    filter is cleanlab's default, prune by noise rate; the ranking is self-confidence (the
    model's probability of the given label, lowest first).
    """
    try:
        from cleanlab.filter import find_label_issues as cl_find  # heavy import (pandas): only here
    except ImportError:
        raise RuntimeError("the report needs cleanlab (pip install cleanlab, or make install)") from None

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(f"probabilities must have shape [{len(labels)}, C], got {list(probabilities.shape)}")
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    return np.asarray(
        cl_find(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1),
        dtype=np.int64,
    )


def plant_flips(labels: np.ndarray, fraction: float, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip a seeded `fraction` of labels to a different, uniformly drawn class; return the
    noisy labels and the flipped indices (sorted)."""
    rng = np.random.default_rng(seed)
    n_flip = int(round(fraction * len(labels)))
    flipped = np.sort(rng.choice(len(labels), size=n_flip, replace=False))
    noisy = np.asarray(labels, dtype=np.int64).copy()
    noisy[flipped] = (noisy[flipped] + rng.integers(1, num_classes, size=n_flip)) % num_classes
    return noisy, flipped


def planted_flip_recovery(labels: np.ndarray, probabilities: np.ndarray, fraction: float, seed: int) -> dict:
    """Plant label flips, run confident learning on the noisy labels, and count how many of
    the planted flips it flags (recall) and how many of its flags are planted (precision)."""
    noisy, flipped = plant_flips(labels, fraction, probabilities.shape[1], seed)
    found = find_label_issues(noisy, probabilities)
    recovered = int(np.isin(flipped, found).sum())
    planted_flags = int(np.isin(found, flipped).sum())
    return {
        "fraction": fraction,
        "planted": len(flipped),
        "flagged": len(found),
        "recovered": recovered,
        "recall": recovered / max(len(flipped), 1),
        "precision": planted_flags / max(len(found), 1),
    }
