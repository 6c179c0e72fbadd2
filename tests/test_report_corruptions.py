"""report.corruptions: seeded, shape-preserving, growing with severity."""

from __future__ import annotations

import numpy as np
import pytest

from report.corruptions import CORRUPTIONS, SEVERITIES, corrupt


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """Garment-like test crops: a bright filled rectangle with a texture, on black."""
    rng = np.random.default_rng(0)
    images = np.zeros((64, 28, 28), dtype=np.uint8)
    for i in range(len(images)):
        top, left = rng.integers(3, 8, size=2)
        images[i, top : 28 - top, left : 28 - left] = rng.integers(120, 255, size=(28 - 2 * top, 28 - 2 * left))
    return images


def test_all_eleven_corruptions_are_there():
    assert len(CORRUPTIONS) == 11
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_seeded_and_keeps_shape_and_dtype(crops, name):
    a = corrupt(crops, name, 3, seed=1)
    assert a.shape == crops.shape and a.dtype == np.uint8
    assert np.array_equal(a, corrupt(crops, name, 3, seed=1))
    assert not np.array_equal(a, crops)
    assert np.array_equal(corrupt(crops, name, 0, seed=1), crops)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_grows_with_severity(crops, name):
    distance = [np.abs(corrupt(crops, name, s, seed=2).astype(float) - crops).mean() for s in SEVERITIES]
    assert all(a < b for a, b in zip(distance, distance[1:], strict=False)), distance


def test_unknown_corruption_and_severity_are_refused(crops):
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(crops, "fog", 1, seed=0)
    with pytest.raises(ValueError, match="severity must be 0..5"):
        corrupt(crops, "rotate", 6, seed=0)
