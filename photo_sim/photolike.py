"""Photo-like versions of Fashion-MNIST crops: the dataset's recipe run backwards.

A crop (white garment on black, 28×28) becomes what a shop might upload: an
enlarged, coloured garment, dark on a light, slightly tinted, uneven and noisy
background, off-centre, saved as JPEG, PNG or WebP. Used by the photo-accuracy
benchmark and the report; depends on numpy and Pillow only.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

FORMATS = ("JPEG", "PNG", "WEBP")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")


def _garment_colour(rng: np.random.Generator) -> np.ndarray:
    """Per-channel absorption at full garment intensity; luma 1 keeps the grey value."""
    colour = rng.uniform(0.4, 1.6, size=3).astype(np.float32)
    return colour / float(colour @ _LUMA)


def make_photo_like(crop: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """One uint8 [28, 28] crop -> (encoded image bytes, Pillow format name)."""
    crop = np.asarray(crop)
    if crop.shape != (28, 28) or crop.dtype != np.uint8:
        raise ValueError(f"crop must be uint8 [28, 28], got {crop.dtype} {list(crop.shape)}")
    side = int(rng.integers(100, 601))
    aspect = rng.uniform(0.75, 1.33)
    width, height = (side, round(side / aspect)) if aspect >= 1 else (round(side * aspect), side)
    garment_side = round(min(width, height) * rng.uniform(0.45, 0.85))
    # Bicubic enlargement: soft edges, as a camera would see them.
    garment = Image.fromarray(crop).resize((garment_side, garment_side), Image.Resampling.BICUBIC)
    coverage = np.asarray(garment, dtype=np.float32)[..., None] / 255

    # Light background: a tinted grey under uneven light (a linear gradient), multiplicative
    # like real illumination, so the garment darkens with the light that falls on it.
    base = rng.uniform(215, 255)
    tint = base + rng.uniform(-6, 6, size=3)
    gy, gx = rng.uniform(-0.06, 0.06, size=2)
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :, None]
    light = 1 + gy * y + gx * x
    background = np.clip(tint * light, 0, 255).astype(np.float32)

    margin_x = max(1, round(0.05 * width))
    margin_y = max(1, round(0.05 * height))
    x0 = int(rng.integers(margin_x, max(margin_x, width - garment_side - margin_x) + 1))
    y0 = int(rng.integers(margin_y, max(margin_y, height - garment_side - margin_y) + 1))
    reflectance = np.ones((height, width, 3), dtype=np.float32)
    patch = np.clip(1 - coverage * _garment_colour(rng), 0, 1)
    reflectance[y0 : y0 + garment_side, x0 : x0 + garment_side] = patch[: height - y0, : width - x0]
    photo = background * reflectance + rng.normal(0, rng.uniform(0, 3), size=background.shape)
    image = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB")

    fmt = FORMATS[int(rng.integers(len(FORMATS)))]
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, fmt, quality=int(rng.integers(60, 96)))
    elif fmt == "WEBP":
        image.save(buffer, fmt, quality=int(rng.integers(70, 96)))
    else:
        image.save(buffer, fmt, compress_level=1)
    return buffer.getvalue(), fmt


def photo_like_set(images: Sequence[np.ndarray], seed: int) -> list[tuple[bytes, str]]:
    """Photo-like versions of many crops, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    return [make_photo_like(crop, rng) for crop in images]


PHONE_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "AVIF")
"""What phones and browsers store photos as; Pillow's "HEIF" is the iPhone's HEIC."""


def phone_photo(photo: bytes, size: tuple[int, int], fmt: str, rng: np.random.Generator) -> bytes:
    """A photo-like upload as a phone camera would store it: enlarged to `size`, sensor noise, `fmt`.

    HEIC carries a 320-pixel thumbnail, as an iPhone's does. Writing HEIC needs the pillow-heif
    opener registered (importing contract.preprocess does it).
    """
    image = Image.open(io.BytesIO(photo)).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    noise = rng.integers(-3, 4, size=(size[1], size[0], 1), dtype=np.int16)  # luma noise, ±3 levels
    pixels = np.asarray(image).astype(np.int16)
    pixels += noise
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    del pixels, noise
    options = {
        "JPEG": {"quality": 90},
        "PNG": {"compress_level": 6},
        "WEBP": {"quality": 85},
        "HEIF": {"quality": 60, "thumbnails": [320], "enc_params": {"preset": "ultrafast"}},  # x265 is slow
        "AVIF": {"quality": 75, "speed": 8},
    }[fmt]
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()
