"""Likely label errors by confident learning (Northcutt, Jiang & Chuang 2021), through
cleanlab's reference implementation.

Lives on the training floor because two callers need it: the report (Fashion-MNIST's
own bad labels) and fine-tuning (corrections a person may have mis-dragged).
"""

from __future__ import annotations

import warnings

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
        raise RuntimeError("confident learning needs cleanlab (pip install cleanlab, or make install)") from None

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(f"probabilities must have shape [{len(labels)}, C], got {list(probabilities.shape)}")
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        # A wardrobe has a handful of items per class; cleanlab warns that it may miss issues
        # there, which is true and expected, not something to print on every run.
        warnings.filterwarnings("ignore", message="May not flag all label issues", category=UserWarning)
        found = cl_find(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    return np.asarray(found, dtype=np.int64)
