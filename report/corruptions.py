"""Seeded image corruptions in the style of MNIST-C (Mu & Gilmer 2019) and ImageNet-C
(Hendrycks & Dietterich 2019), five severities each, for uint8 [N, 28, 28] batches.

Every function is pure: images and a numpy Generator in, new images out. Severity 0 is
the clean image. Per-image random parameters (direction, sign) come from the generator,
so one seed gives one corrupted test set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)


def _to_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson (photon) noise; fewer photons per unit intensity at higher severity."""
    photons = (60, 25, 12, 5, 3)[severity - 1]
    x = _to_float(images)
    return _to_uint8(rng.poisson(x * photons) / photons)


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise on a fraction of the pixels."""
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    out = images.copy()
    hit = rng.random(images.shape) < amount
    salt = rng.random(images.shape) < 0.5
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


def glass_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, then each pixel swapped with a random neighbour within `delta`, then blur
    again (ImageNet-C's glass blur, with the local shuffles drawn all at once)."""
    sigma, delta = ((0.4, 1), (0.7, 1), (0.9, 2), (1.1, 2), (1.4, 3))[severity - 1]
    x = ndimage.gaussian_filter(_to_float(images), sigma=(0, sigma, sigma))
    n, h, w = x.shape
    dy = rng.integers(-delta, delta + 1, size=x.shape)
    dx = rng.integers(-delta, delta + 1, size=x.shape)
    rows = np.clip(np.arange(h)[None, :, None] + dy, 0, h - 1)
    cols = np.clip(np.arange(w)[None, None, :] + dx, 0, w - 1)
    x = x[np.arange(n)[:, None, None], rows, cols]
    return _to_uint8(ndimage.gaussian_filter(x, sigma=(0, sigma, sigma)))


def _line_kernel(length: int, angle: float) -> np.ndarray:
    k = np.zeros((length, length), dtype=np.float32)
    c = (length - 1) / 2
    for t in np.linspace(-c, c, 4 * length):
        k[int(round(c + t * np.sin(angle))), int(round(c + t * np.cos(angle)))] = 1
    return k / k.sum()


def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur along a line of growing length at a random angle per image (one of 16 angles, so
    each angle's images are convolved together)."""
    length = (3, 5, 7, 9, 11)[severity - 1]
    x = _to_float(images)
    which = rng.integers(0, 16, size=len(images))
    out = np.empty_like(x)
    for a in np.unique(which):
        kernel = _line_kernel(length, np.pi * a / 16)[None]
        out[which == a] = ndimage.convolve(x[which == a], kernel, mode="constant")
    return _to_uint8(out)


def _affine(images: np.ndarray, matrices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-image affine maps (output (row, col) -> input, 2x2 about the centre, plus a shift),
    bilinear with black fill, for the whole batch at once (gathering the four neighbours is
    several times faster here than a per-image scipy.ndimage.affine_transform)."""
    x = _to_float(images)
    n, h, w = x.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    gr, gc = np.meshgrid(np.arange(h) - centre[0], np.arange(w) - centre[1], indexing="ij")
    m = matrices.astype(np.float32)[:, :, :, None, None]
    shift = (centre + offsets).astype(np.float32)[:, :, None, None]
    src_r = m[:, 0, 0] * gr + m[:, 0, 1] * gc + shift[:, 0]
    src_c = m[:, 1, 0] * gr + m[:, 1, 1] * gc + shift[:, 1]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))  # a black border makes outside samples 0
    r = np.clip(src_r + 1, 0, h + 0.999)
    c = np.clip(src_c + 1, 0, w + 0.999)
    r0, c0 = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
    fr, fc = r - r0, c - c0
    b = np.arange(n)[:, None, None]
    out = (
        padded[b, r0, c0] * (1 - fr) * (1 - fc)
        + padded[b, r0 + 1, c0] * fr * (1 - fc)
        + padded[b, r0, c0 + 1] * (1 - fr) * fc
        + padded[b, r0 + 1, c0 + 1] * fr * fc
    )
    return _to_uint8(out)


def _random_signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=n)


def shear(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Horizontal shear of random sign."""
    s = (0.15, 0.25, 0.35, 0.45, 0.6)[severity - 1] * _random_signs(rng, len(images))
    m = np.zeros((len(images), 2, 2))
    m[:, 0, 0] = m[:, 1, 1] = 1
    m[:, 1, 0] = s  # (row, col) coordinates: column shifts with row
    return _affine(images, m, np.zeros((len(images), 2)))


def scale(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Shrink towards the centre (MNIST-C's scale corruption zooms out)."""
    factor = (0.9, 0.8, 0.7, 0.6, 0.5)[severity - 1]
    m = np.tile(np.eye(2) / factor, (len(images), 1, 1))
    return _affine(images, m, np.zeros((len(images), 2)))


def rotate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Rotation about the centre by a growing angle of random sign."""
    degrees = (10, 20, 30, 40, 50)[severity - 1] * _random_signs(rng, len(images))
    t = np.deg2rad(degrees)
    m = np.stack([np.stack([np.cos(t), -np.sin(t)], 1), np.stack([np.sin(t), np.cos(t)], 1)], 1)
    return _affine(images, m, np.zeros((len(images), 2)))


def translate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Shift by a growing number of pixels in a random direction."""
    pixels = (2, 3, 4, 5, 6)[severity - 1]
    angle = rng.uniform(0, 2 * np.pi, size=len(images))
    offsets = np.stack([np.sin(angle), np.cos(angle)], 1) * pixels
    m = np.tile(np.eye(2), (len(images), 1, 1))
    return _affine(images, m, offsets)


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add a constant to every pixel (the black background turns grey)."""
    delta = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    return _to_uint8(_to_float(images) + delta)


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pull every pixel towards the image mean."""
    factor = (0.6, 0.45, 0.3, 0.2, 0.1)[severity - 1]
    x = _to_float(images)
    mean = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((x - mean) * factor + mean)


def inversion(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blend towards the negative (MNIST-C's inverse at severity 5, dark garment on white)."""
    alpha = (0.2, 0.4, 0.6, 0.8, 1.0)[severity - 1]
    x = _to_float(images)
    return _to_uint8((1 - alpha) * x + alpha * (1 - x))


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "translate": translate,
    "brightness": brightness,
    "contrast": contrast,
    "inversion": inversion,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One corruption at one severity (0 = clean), seeded by (seed, corruption, severity)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {list(CORRUPTIONS)}")
    if severity == 0:
        return images.copy()
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 0..5, got {severity!r}")
    rng = np.random.default_rng([seed, list(CORRUPTIONS).index(name), severity])
    return CORRUPTIONS[name](images, severity, rng)
