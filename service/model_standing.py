"""How the served model stands against the shipped one, by the Fashion-MNIST test accuracy each records.

The ready line, /readyz (service/readyz.py) and the page's Teach panel say which model serves and its
recorded test accuracy, and warn when it is more than MAX_BELOW_SHIPPED below the shipped model's:
a much worse model (a tiny test model crowned in a person's registry, issue 31) is never served
without a word. Only metadata is read: nothing is measured here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contract import metadata as meta
from contract.runtime import Classifier, ModelError, check_model_file
from service.model_choice import choose_model

MAX_BELOW_SHIPPED = 0.01
"""A served model recording more than this (1 point) less test accuracy than the shipped one is warned about."""


@dataclass(frozen=True)
class Shipped:
    """The model a server on this device serves when none is named (service/model_choice.py) and its figure."""

    path: Path
    test_accuracy: float | None


def shipped_model(device: str) -> Shipped:
    """The shipped model for `device` (WARDROBE_MODEL ignored) and its recorded test accuracy (None: unreadable)."""
    path = choose_model(device, environ={}).path
    try:
        return Shipped(path, meta.number(meta.read_metadata(check_model_file(path)), meta.TEST_ACCURACY))
    except (ModelError, meta.MetadataError, OSError):
        return Shipped(path, None)


def recorded_test_accuracy(classifier: Classifier) -> float | None:
    try:
        return meta.number(classifier.info.metadata, meta.TEST_ACCURACY)
    except meta.MetadataError:
        return None


def standing(classifier: Classifier, shipped: Shipped) -> dict:
    """{"model_sha256", "model_test_accuracy", "shipped_test_accuracy", "warning"} for the served model;
    "warning" is None unless it records over MAX_BELOW_SHIPPED less than the shipped model (or nothing)."""
    accuracy, reference = recorded_test_accuracy(classifier), shipped.test_accuracy
    warning = None
    name = f"model {classifier.info.sha256[:12]}"
    if reference is not None and accuracy is None:
        warning = f"{name} records no Fashion-MNIST test accuracy (the shipped {shipped.path.name}: {reference:.4f})"
    elif reference is not None and accuracy < reference - MAX_BELOW_SHIPPED - 1e-12:
        warning = (
            f"{name} records Fashion-MNIST test accuracy {accuracy:.4f}, {(reference - accuracy) * 100:.1f} points "
            f"below the shipped {shipped.path.name}'s {reference:.4f}"
        )
    return {
        "model_sha256": classifier.info.sha256, "model_test_accuracy": accuracy,
        "shipped_test_accuracy": reference, "warning": warning,
    }  # fmt: skip
