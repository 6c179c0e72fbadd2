"""Home snapshots on a bedsheet: the garment lies on a striped or checked sheet under one lamp.

Light falls off across the frame, a soft shadow falls beside the garment, the phone is held at
a slight angle (rotated, sometimes cut by an edge) and saves a JPEG. The first home style of
the project (`benchmarks/unseen_style.py` writes folders of them; the fine-tuning tests and
benchmark learn from them); numpy and Pillow only.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _sheet(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A tinted bedsheet, float32 [H, W, 3] in 0..255: stripes or a check, plus weave noise."""
    base = rng.uniform(190, 240)
    tint = base * rng.uniform(0.92, 1.06, size=3)
    period = rng.uniform(0.03, 0.09) * min(height, width)
    depth = rng.uniform(5, 14)
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    angle = rng.uniform(0, np.pi)
    u = x * np.cos(angle) + y * np.sin(angle)
    pattern = np.sign(np.sin(2 * np.pi * u / period))
    if rng.random() < 0.5:  # gingham: the same stripes crossed
        v = -x * np.sin(angle) + y * np.cos(angle)
        pattern = (pattern + np.sign(np.sin(2 * np.pi * v / period))) / 2
    weave = rng.normal(0, 3, size=(height, width)).astype(np.float32)
    return (tint[None, None, :] + (depth * pattern + weave)[..., None]).astype(np.float32)


def _lamp(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One lamp off to a side: light falls off with distance from it (not a linear gradient)."""
    cy, cx = rng.uniform(-0.6, 1.6), rng.choice([rng.uniform(-0.8, 0.1), rng.uniform(0.9, 1.8)])
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    distance = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    fall = rng.uniform(0.15, 0.35)
    return (1.0 - fall * (distance - distance.min()) / max(float(np.ptp(distance)), 1e-6)).astype(np.float32)


def make_unseen_style(crop: np.ndarray, rng: np.random.Generator) -> bytes:
    """One uint8 [28, 28] Fashion-MNIST crop -> a JPEG 'home snapshot' of that garment."""
    crop = np.asarray(crop)
    if crop.shape != (28, 28) or crop.dtype != np.uint8:
        raise ValueError(f"crop must be uint8 [28, 28], got {crop.dtype} {list(crop.shape)}")
    width = int(rng.integers(240, 481))
    height = round(width * rng.uniform(1.0, 1.4))  # phones shoot portrait
    # Tight framing: the garment fills most of the short side, sometimes past an edge.
    side = round(min(width, height) * rng.uniform(0.8, 1.0))
    angle = rng.uniform(-9, 9)
    garment = Image.fromarray(crop).resize((side, side), Image.Resampling.BICUBIC)
    garment = garment.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    layer = Image.new("L", (width, height), 0)
    x0 = (width - garment.width) // 2 + int(rng.integers(-side // 10, side // 10 + 1))
    y0 = (height - garment.height) // 2 + int(rng.integers(-side // 10, side // 10 + 1))
    layer.paste(garment, (x0, y0))
    coverage = np.asarray(layer, dtype=np.float32) / 255

    # A soft shadow from the lamp: the garment's silhouette, blurred and shifted.
    shift = (rng.integers(-side // 14, side // 14 + 1), rng.integers(side // 40, side // 12 + 1))
    shadow_layer = Image.fromarray((coverage > 0.05).astype(np.uint8) * 255)
    shadow_layer = shadow_layer.filter(ImageFilter.GaussianBlur(side / 40))
    shadow = np.roll(np.asarray(shadow_layer, dtype=np.float32) / 255, shift, axis=(1, 0))
    shade = 1 - rng.uniform(0.12, 0.3) * shadow

    colour = rng.uniform(0.5, 1.5, size=3).astype(np.float32)
    colour = colour / float(colour @ _LUMA) * rng.uniform(0.6, 0.9)  # faded home laundry, not studio black
    # The garment hides the sheet under it (opaque where it is), unlike a shop's white backdrop.
    opacity = np.clip(coverage * 3, 0, 1)[..., None]
    fabric = 240 * np.clip(1 - coverage[..., None] * colour, 0.02, 1)
    scene = _sheet(height, width, rng) * (1 - opacity) + fabric * opacity
    warm = np.array([1.0, rng.uniform(0.9, 0.97), rng.uniform(0.75, 0.9)], dtype=np.float32)  # tungsten
    photo = scene * (shade * _lamp(height, width, rng))[..., None] * warm
    photo += rng.normal(0, rng.uniform(2, 5), size=photo.shape)
    image = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB")
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))  # a hand-held phone
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(55, 86)))
    return buffer.getvalue()


def unseen_style_set(images: Sequence[np.ndarray], seed: int) -> list[bytes]:
    """Home snapshots of many crops, reproducible from the seed."""
    rng = np.random.default_rng(seed)
    return [make_unseen_style(crop, rng) for crop in images]
