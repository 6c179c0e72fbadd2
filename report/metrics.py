"""Pure evaluation metrics: bootstrap intervals of accuracy and per-class scores, the majority
baseline, confusions, selective accuracy at a threshold and the corruption error. Arrays in,
numbers out; seeds are passed in. Wilson intervals, McNemar's test and the accuracy threshold are
contract/stats.py's; calibration (temperature, ECE, NLL) is contract/calibration.py's, the same
code the exporter uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from contract.stats import wilson_interval


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n] indices drawn with replacement; one seed gives one set of resamples."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1 - level) / 2
    return np.quantile(samples, alpha, axis=0), np.quantile(samples, 1 - alpha, axis=0)


def bootstrap_confusions(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, indices: np.ndarray
) -> np.ndarray:
    """Confusion matrices [resamples, C, C] (rows true, columns predicted) of each resample."""
    resamples = indices.shape[0]
    cells = labels[indices] * num_classes + predictions[indices]
    cells = cells + (np.arange(resamples) * num_classes * num_classes)[:, None]
    counts = np.bincount(cells.ravel(), minlength=resamples * num_classes * num_classes)
    return counts.reshape(resamples, num_classes, num_classes)


def prf_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 from confusion matrices [..., C, C]; 0 where undefined
    (sklearn's zero_division=0)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    predicted = cm.sum(axis=-2)
    actual = cm.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def classification_summary(
    labels: np.ndarray,
    predictions: np.ndarray,
    num_classes: int,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Accuracy (bootstrap and Wilson intervals), macro-F1 and per-class P/R/F1 with bootstrap
    percentile intervals; every statistic is computed on the same resamples."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    n = len(labels)
    cm = sk_confusion_matrix(labels, predictions, labels=np.arange(num_classes))
    precision, recall, f1 = prf_from_confusion(cm)
    idx = bootstrap_indices(n, resamples, seed)
    boot_cm = bootstrap_confusions(labels, predictions, num_classes, idx)
    b_precision, b_recall, b_f1 = prf_from_confusion(boot_cm)
    b_acc = np.trace(boot_cm, axis1=1, axis2=2) / n
    b_macro = b_f1.mean(axis=1)
    acc = float(np.trace(cm) / n)
    acc_lo, acc_hi = _percentile_interval(b_acc, level)
    w_lo, w_hi = wilson_interval(int(np.trace(cm)), n)
    m_lo, m_hi = _percentile_interval(b_macro, level)
    intervals = {
        name: _percentile_interval(s, level)
        for name, s in (("precision", b_precision), ("recall", b_recall), ("f1", b_f1))
    }
    per_class = []
    for c in range(num_classes):
        row = {"support": int(cm[c].sum())}
        for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
            lo, hi = intervals[name]
            row[name] = float(values[c])
            row[f"{name}_ci"] = [float(lo[c]), float(hi[c])]
        per_class.append(row)
    return {
        "n": n,
        "correct": int(np.trace(cm)),
        "accuracy": acc,
        "accuracy_ci": [float(acc_lo), float(acc_hi)],
        "accuracy_wilson": [w_lo, w_hi],
        "macro_f1": float(f1.mean()),
        "macro_f1_ci": [float(m_lo), float(m_hi)],
        "per_class": per_class,
        "confusion": cm.tolist(),
    }


def most_frequent_baseline(train_labels: np.ndarray, test_labels: np.ndarray) -> dict:
    """Accuracy of always answering the most frequent training class."""
    counts = np.bincount(train_labels)
    majority = int(np.argmax(counts))
    return {
        "class_id": majority,
        "accuracy": accuracy(test_labels, np.full_like(test_labels, majority)),
    }


def top_confused_pairs(cm: np.ndarray, k: int) -> list[dict]:
    """The k largest off-diagonal cells of a confusion matrix, largest first."""
    cm = np.asarray(cm)
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, -1)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = []
    for flat in order:
        t, p = divmod(int(flat), cm.shape[1])
        if off[t, p] <= 0:
            break
        pairs.append(
            {
                "true": t,
                "predicted": p,
                "count": int(cm[t, p]),
                "rate": float(cm[t, p] / max(cm[t].sum(), 1)),
            }
        )
    return pairs


# ---------------------------------------------------------------------------
# Selective prediction


def selective_at(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> dict:
    """Coverage and accuracy of the answers with confidence >= threshold."""
    keep = confidence >= threshold
    kept = int(keep.sum())
    return {
        "coverage": kept / len(confidence),
        "accuracy": float(correct[keep].mean()) if kept else float("nan"),
    }


# ---------------------------------------------------------------------------
# Corruption error (Hendrycks & Dietterich 2019)


def corruption_error(accuracy: Sequence[float], baseline_accuracy: Sequence[float]) -> dict:
    """CE and relative CE of one corruption from accuracies at severities 0 (clean), 1, ..., 5.

    CE is the model's summed error over the corrupted severities divided by the baseline's;
    relative CE divides the model's summed *increase* in error over its clean error by the
    baseline's, and is None where the baseline barely degrades (summed increase <= 0.01).
    """
    err = 1 - np.array(accuracy[1:])
    base_err = 1 - np.array(baseline_accuracy[1:])
    base_drop = (base_err - (1 - baseline_accuracy[0])).sum()
    drop = (err - (1 - accuracy[0])).sum()
    return {
        "ce": float(err.sum() / max(base_err.sum(), 1e-12)),
        "relative_ce": float(drop / base_drop) if base_drop > 0.01 else None,
    }


def mean_corruption_error(rows: Sequence[dict]) -> tuple[float, float | None]:
    """(mCE, relative mCE): the means over corruptions of `corruption_error`'s two values;
    relative mCE is None when any corruption's relative CE is."""
    mce = float(np.mean([row["ce"] for row in rows]))
    relative = [row["relative_ce"] for row in rows]
    return mce, (float(np.mean(relative)) if all(r is not None for r in relative) else None)
