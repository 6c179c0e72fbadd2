"""Parts that home-photo generators share: patterned fabric, a garment's layer, light, the camera.

A Fashion-MNIST crop is the negated grey of a product photo: its value at a pixel is how dark
the garment is there. `fabric` turns that back into a coloured, optionally patterned garment
(stripes, checks or a print of two colours), `place` puts it into a scene, and `snapshot`
applies the light and the phone (noise, hand shake, JPEG). numpy and Pillow only; every random
choice comes from the generator passed in, so a seed fixes the photo.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")
PAPER = 240.0
"""The level white paper reaches in these scenes, before the light."""


def check_crop(crop: np.ndarray) -> np.ndarray:
    crop = np.asarray(crop)
    if crop.shape != (28, 28) or crop.dtype != np.uint8:
        raise ValueError(f"crop must be uint8 [28, 28], got {crop.dtype} {list(crop.shape)}")
    return crop


def _colour(rng: np.random.Generator) -> np.ndarray:
    """Per-channel absorption with luma 1: absorbing `coverage` of it keeps the crop's grey value."""
    colour = rng.uniform(0.3, 1.7, size=3).astype(np.float32)
    return colour / float(colour @ LUMA)


def pattern(height: int, width: int, period: float, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A 0/1 mask of stripes, checks or a print (scattered dots), and its name."""
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    kind = str(rng.choice(["stripes", "checks", "print"]))
    if kind == "print":
        # Dots on a jittered grid: a polka or small floral print seen from afar.
        phase_y, phase_x = rng.uniform(0, period, size=2)
        jitter = rng.uniform(0, 0.3)
        u = np.sin(2 * np.pi * (x + phase_x) / period + jitter * np.sin(y / period))
        v = np.sin(2 * np.pi * (y + phase_y) / period)
        return ((u * v) > rng.uniform(0.35, 0.7)).astype(np.float32), kind
    angle = rng.choice([0.0, np.pi / 2, rng.uniform(0, np.pi)])
    u = x * np.cos(angle) + y * np.sin(angle)
    duty = rng.uniform(0.3, 0.6)
    mask = (np.mod(u / period, 1.0) < duty).astype(np.float32)
    if kind == "checks":
        v = -x * np.sin(angle) + y * np.cos(angle)
        mask = np.maximum(mask, (np.mod(v / period, 1.0) < duty).astype(np.float32))
    return mask, kind


def fabric(coverage: np.ndarray, rng: np.random.Generator, patterned: bool) -> tuple[np.ndarray, str]:
    """Reflectance [H, W, 3] in 0..1 of a garment whose darkness is `coverage` [H, W] in 0..1."""
    main = _colour(rng) * rng.uniform(0.75, 1.0)
    if not patterned:
        return np.clip(1 - coverage[..., None] * main, 0.02, 1), "plain"
    period = rng.uniform(0.04, 0.12) * max(coverage.shape)
    mask, kind = pattern(*coverage.shape, period, rng)
    second = _colour(rng) * rng.uniform(0.3, 1.1)
    absorption = main * (1 - mask[..., None]) + second * mask[..., None]
    return np.clip(1 - coverage[..., None] * absorption, 0.02, 1), kind


def garment_layer(crop: np.ndarray, side: int, angle: float, shear: float = 0.0) -> Image.Image:
    """The crop enlarged to `side` (bicubic: soft edges, as a camera sees them), sheared and turned."""
    garment = Image.fromarray(crop).resize((side, side), Image.Resampling.BICUBIC)
    if shear:
        garment = garment.transform(
            (side, side), Image.Transform.AFFINE, (1, shear, -shear * side / 2, 0, 1, 0), Image.Resampling.BILINEAR
        )
    return garment.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)


def place(layer: Image.Image, size: tuple[int, int], centre: tuple[int, int]) -> np.ndarray:
    """The garment layer pasted on an empty frame of `size` (width, height), as coverage in 0..1."""
    frame = Image.new("L", size, 0)
    frame.paste(layer, (centre[0] - layer.width // 2, centre[1] - layer.height // 2))
    return np.asarray(frame, dtype=np.float32) / 255


def dress(
    background: np.ndarray, coverage: np.ndarray, rng: np.random.Generator, patterned: bool
) -> tuple[np.ndarray, str]:
    """The garment laid over a background [H, W, 3] (0..255): opaque where it is, unlike a backdrop."""
    reflectance, kind = fabric(coverage, rng, patterned)
    opacity = np.clip(coverage * 3, 0, 1)[..., None]
    return background * (1 - opacity) + PAPER * reflectance * opacity, kind


def cast_shadow(coverage: np.ndarray, shift: tuple[int, int], blur: float, strength: float) -> np.ndarray:
    """Light multiplier [H, W]: the garment's silhouette shifted by (dx, dy), blurred, darkening."""
    silhouette = Image.fromarray(((coverage > 0.05) * 255).astype(np.uint8))
    if blur > 0:
        silhouette = silhouette.filter(ImageFilter.GaussianBlur(blur))
    shadow = np.roll(np.asarray(silhouette, dtype=np.float32) / 255, shift, axis=(1, 0))
    return 1 - strength * shadow


def hanger(size: tuple[int, int], hook: tuple[int, int], span: int, drop: int, rng: np.random.Generator) -> tuple:
    """A clothes hanger (hook, shoulders, bar) drawn as a mask [H, W] in 0..1, and its colour (0..255)."""
    image = Image.new("L", size, 0)
    draw = ImageDraw.Draw(image)
    width = max(2, round(span * rng.uniform(0.02, 0.05)))
    hx, hy = hook
    radius = max(3, span // 12)
    draw.arc((hx - radius, hy - radius, hx + radius, hy + radius), 180, 360 + 60, fill=255, width=width)
    neck = (hx + radius, hy)
    shoulders = ((hx - span // 2, hy + drop), (hx + span // 2, hy + drop))
    draw.line([neck, (hx, hy + radius * 2), shoulders[0]], fill=255, width=width)
    draw.line([(hx, hy + radius * 2), shoulders[1]], fill=255, width=width)
    if rng.random() < 0.5:  # a wire hanger's bottom bar; wooden ones have none
        draw.line([shoulders[0], shoulders[1]], fill=255, width=max(2, width // 2))
    colour = rng.choice([np.array([120.0, 80, 45]), np.array([200.0, 200, 205]), rng.uniform(20, 240, size=3)])
    return np.asarray(image, dtype=np.float32) / 255, np.asarray(colour, dtype=np.float32)


def paint(scene: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Paint an opaque object (mask [H, W] in 0..1) of one colour into the scene."""
    return scene * (1 - mask[..., None]) + colour * mask[..., None]


def radial(height: int, width: int, centre: tuple[float, float]) -> np.ndarray:
    """Distance from `centre` (fractions of height, width), scaled so a frame's corner is about 1."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None] - centre[0]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :] - centre[1]
    return np.sqrt(y**2 + x**2) / np.sqrt(0.5)


def encode(photo: np.ndarray, rng: np.random.Generator, blur: tuple[float, float] = (0.3, 1.0)) -> bytes:
    """Sensor noise, a hand-held phone's blur and a phone JPEG."""
    photo = photo + rng.normal(0, rng.uniform(2, 5), size=photo.shape)
    image = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB")
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(*blur)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(60, 92)))
    return buffer.getvalue()
