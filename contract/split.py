"""The validation split: which of the 60,000 training images a model was chosen on.

A model records its split as `val_size` and `split_seed` (contract/metadata.py,
`ValidationSplit`); `stratified_split` turns those two numbers back into the exact
indices. The split is class-stratified and drawn by scikit-learn's
`train_test_split(..., stratify=labels, random_state=seed)`, both halves sorted, so
the same labels, size and seed give the same indices for training, export, INT8
calibration and the report. numpy and scikit-learn only: reading a model's split
never loads PyTorch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """The training images (indices into the 60,000) a run trains on and those it validates on."""

    train_indices: np.ndarray
    val_indices: np.ndarray
    seed: int

    @property
    def checksum(self) -> str:
        """SHA-256 of both index arrays, so a run records exactly which images it trained on."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.train_indices, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.val_indices, dtype=np.int64).tobytes())
        return h.hexdigest()


def stratified_split(labels: np.ndarray, val_size: int = 5000, seed: int = 0) -> Split:
    """Deterministic, class-stratified split of the training set into train and validation."""
    if not 0 < val_size < len(labels):
        raise ValueError(f"val_size must be between 1 and {len(labels) - 1}, got {val_size}")
    from sklearn.model_selection import train_test_split  # here: importing Split needs no sklearn

    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=val_size, stratify=labels, random_state=seed
    )
    return Split(np.sort(train_idx), np.sort(val_idx), seed)
