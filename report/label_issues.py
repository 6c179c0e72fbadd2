"""A planted-flip check that confident learning (training/label_issues.py, shared with
fine-tuning) finds real label errors."""

from __future__ import annotations

import numpy as np

from training.label_issues import find_label_issues

__all__ = ["find_label_issues", "plant_flips", "planted_flip_recovery"]


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
