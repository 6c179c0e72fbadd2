"""What the figures need beyond report.json: the per-image pixels (and their captions) of the
galleries, the sample sprite and the full risk–coverage curve.

The compute step fills one `FigureInputs` next to the report dict; `report.figures` draws
from the two. Every number a reader sees on the page is in report.json; these arrays only
become pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Gallery:
    """A grid of 28×28 crops with a caption above each; None leaves a cell blank."""

    crops: list[np.ndarray | None]
    captions: list[str]
    ncols: int = 8


@dataclass
class FigureInputs:
    sample_images: np.ndarray | None = None
    """uint8 [N, 28, 28] test images and their labels for the one-row-per-class sprite."""
    sample_labels: np.ndarray | None = None
    galleries: dict[str, Gallery] = field(default_factory=dict)
    """Keyed by the figure's file stem ('confident_errors' -> confident_errors.png)."""
    risk_coverage: tuple[np.ndarray, np.ndarray] | None = None
    """(coverage, accuracy) at every distinct confidence of the test set."""


def short(name: str) -> str:
    """Class names short enough for image captions."""
    return {"T-shirt/top": "T-shirt", "Ankle boot": "Boot"}.get(name, name)


def caption(true: int, pred: int, conf: float, classes: Sequence[str]) -> str:
    """'t=true\\np=predicted confidence', as the course writes failure cases."""
    return f"t={short(classes[true])}\np={short(classes[pred])} {conf:.2f}"
