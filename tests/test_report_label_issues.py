"""Confident learning finds label errors we plant in real Fashion-MNIST images."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline

from report.label_issues import find_label_issues, plant_flips, planted_flip_recovery
from training import fashion_mnist


@pytest.fixture(scope="module")
def out_of_sample() -> tuple[np.ndarray, np.ndarray]:
    """Labels and out-of-sample probabilities (3-fold cross-validated PCA + regularised QDA,
    about 80% accurate, fitted in a second) for 3,000 training images."""
    ds = fashion_mnist.load()
    idx = np.random.default_rng(0).choice(len(ds.train_labels), size=3000, replace=False)
    x = ds.train_images[idx].reshape(len(idx), -1) / 255.0
    y = ds.train_labels[idx]
    clf = make_pipeline(PCA(30, random_state=0), QuadraticDiscriminantAnalysis(reg_param=0.1))
    probs = cross_val_predict(clf, x, y, cv=3, method="predict_proba")
    return y, probs


def test_plant_flips_changes_exactly_the_flipped_labels():
    labels = np.repeat(np.arange(10), 100)
    noisy, flipped = plant_flips(labels, 0.05, 10, seed=3)
    assert len(flipped) == 50
    assert np.array_equal(np.nonzero(noisy != labels)[0], flipped)


def test_confident_learning_recovers_planted_label_flips(out_of_sample):
    labels, probs = out_of_sample
    # Flip labels *after* computing the probabilities, as a noisy annotator would: the model
    # saw clean labels, so a flipped label is a real error for it to find.
    result = planted_flip_recovery(labels, probs, fraction=0.05, seed=1)
    print(
        f"planted {result['planted']}, flagged {result['flagged']}, recovered "
        f"{result['recovered']} (recall {result['recall']:.2f}, "
        f"precision {result['precision']:.2f})"
    )
    assert result["planted"] == 150
    assert result["recall"] >= 0.75
    # A 5% flip rate means a random flag is planted 5% of the time; the flags are several times
    # richer. The rest are images this weak model gets wrong, and the dataset's own bad labels.
    assert result["precision"] >= 3 * 0.05


def test_issues_are_ranked_by_self_confidence(out_of_sample):
    labels, probs = out_of_sample
    found = find_label_issues(labels, probs)
    given = probs[found, labels[found]]
    assert len(found) > 0
    assert np.all(np.diff(given) >= 0)  # lowest probability of the given label first


def test_probabilities_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"probabilities must have shape \[3, C\]"):
        find_label_issues(np.array([0, 1, 2]), np.ones((2, 3)) / 3)
