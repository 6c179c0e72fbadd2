"""`wardrobe data`: where the data came from, its checksums, the split and class balance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract.split import stratified_split
from training import fashion_mnist


def class_counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=len(fashion_mnist.CLASSES)).tolist()


def print_summary(data_dir: Path | None, download: bool, quiet: bool, seed: int = 0) -> None:
    ds = fashion_mnist.load(data_dir, download=download)
    if quiet:
        print(f"Fashion-MNIST verified in {ds.source} (dataset checksum {ds.checksum[:16]}…)")
        return
    split = stratified_split(ds.train_labels, seed=seed)
    print(f"source: {ds.source}")
    for key, sha in ds.sha256.items():
        print(f"  {fashion_mnist.FILES[key][0]:28s} sha256 {sha}")
    print(f"dataset checksum: {ds.checksum}")
    print(f"split: seed {seed}, indices sha256 {split.checksum}")
    splits = {
        "train": ds.train_labels[split.train_indices],
        "validation": ds.train_labels[split.val_indices],
        "test": ds.test_labels,
    }
    width = max(len(c) for c in fashion_mnist.CLASSES)
    print(f"{'class':{width}s} " + " ".join(f"{name:>10s}" for name in splits))
    counts = {name: class_counts(labels) for name, labels in splits.items()}
    for i, cls in enumerate(fashion_mnist.CLASSES):
        print(f"{cls:{width}s} " + " ".join(f"{counts[name][i]:>10d}" for name in splits))
    print(f"{'total':{width}s} " + " ".join(f"{len(labels):>10d}" for labels in splits.values()))
