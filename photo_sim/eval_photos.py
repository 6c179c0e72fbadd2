"""Two home-photo styles kept for evaluation only: nothing is trained, tuned or calibrated on them.

They exist to measure what the service does on a room nobody designed it for, above all whether
the answers it gives without `unsure` are still right (docs/benchmarks.md, "Unsure on unseen
styles"). Each makes things the other generators (`photo_sim/photolike.py`, `photo_sim/bedsheet.py`,
`photo_sim/home_photos.py`) never do:

- `lamp_bedspread`: on a bedspread printed with large, many-coloured motifs (flowers or paisley
  blobs in three colours, not a stripe or a check), under one warm bedside lamp close to a corner:
  an orange cast, a bright pool of light and a steep fall to a dark far side.
- `table_side_shadow`: on a wooden tabletop (one slab, long grain, knots, a varnish sheen) with a
  hard shadow edge across the frame from a window frame or a wall beside the table: part of the
  garment and the table in deep shade, the rest in low, raking sun.

Each function takes a uint8 [28, 28] crop and a numpy Generator and returns phone-JPEG bytes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from photo_sim import scenes


def _frame(rng: np.random.Generator) -> tuple[int, int]:
    width = int(rng.integers(280, 441))
    return width, round(width * rng.uniform(0.8, 1.3))  # landscape or portrait


def _motifs(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A bedspread print: a ground and blobs of two more colours (flowers, paisley), soft-edged."""
    ground = rng.uniform(90, 235, size=3).astype(np.float32)
    spread = np.broadcast_to(ground, (height, width, 3)).copy()
    size = rng.uniform(0.05, 0.12) * max(height, width)
    for colour in (rng.uniform(30, 230, size=3), rng.uniform(30, 230, size=3)):
        count = int(rng.integers(8, 20))
        field = np.zeros((height, width), dtype=np.float32)
        for cy, cx in zip(rng.uniform(0, height, count), rng.uniform(0, width, count), strict=True):
            # An ellipse turned at random: petals and paisley drops rather than dots on a grid.
            angle, stretch, scale = rng.uniform(0, np.pi), rng.uniform(1.0, 2.5), size * rng.uniform(0.5, 1.2)
            reach = int(stretch * scale) + 2  # drawn only in its own box: a full frame per motif was slow
            top, left = max(0, int(cy) - reach), max(0, int(cx) - reach)
            y = np.arange(top, min(height, int(cy) + reach), dtype=np.float32)[:, None] - cy
            x = np.arange(left, min(width, int(cx) + reach), dtype=np.float32)[None, :] - cx
            u = x * np.cos(angle) + y * np.sin(angle)
            v = -x * np.sin(angle) + y * np.cos(angle)
            r = np.sqrt((u / stretch) ** 2 + v**2) / scale
            box = field[top : top + y.shape[0], left : left + x.shape[1]]
            np.maximum(box, np.clip(1.5 - 1.5 * r, 0, 1), out=box)
        spread = spread * (1 - field[..., None]) + colour.astype(np.float32) * field[..., None]
    return spread + rng.normal(0, 4, size=(height, width, 1)).astype(np.float32)  # quilted cloth


def lamp_bedspread(crop: np.ndarray, rng: np.random.Generator) -> bytes:
    """A garment on a bedspread with large coloured motifs, lit by a warm bedside lamp near a corner."""
    crop = scenes.check_crop(crop)
    width, height = _frame(rng)
    side = round(min(width, height) * rng.uniform(0.6, 0.85))
    layer = scenes.garment_layer(crop, side, rng.uniform(-15, 15))
    centre = (
        width // 2 + int(rng.integers(-width // 12, width // 12 + 1)),
        height // 2 + int(rng.integers(-height // 12, height // 12 + 1)),
    )
    coverage = scenes.place(layer, (width, height), centre)
    scene, _ = scenes.dress(_motifs(height, width, rng), coverage, rng, patterned=rng.random() < 0.3)
    # The lamp: a pool of light around a point near a corner, falling steeply with distance.
    corner = (rng.choice([rng.uniform(-0.2, 0.15), rng.uniform(0.85, 1.2)]), rng.uniform(-0.2, 1.2))
    r = scenes.radial(height, width, corner)
    light = 0.35 + 0.9 * np.exp(-(r**2) / (2 * rng.uniform(0.25, 0.45) ** 2))
    light = light * scenes.cast_shadow(coverage, (int(rng.integers(-6, 7)), int(rng.integers(2, 9))), side / 30, 0.2)
    warm = np.array([1.0, rng.uniform(0.72, 0.85), rng.uniform(0.42, 0.6)], dtype=np.float32)  # 2700 K bulb
    return scenes.encode(scene * light[..., None] * warm * rng.uniform(0.95, 1.15), rng, blur=(0.4, 1.2))


def _tabletop(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """One wooden slab: long wavy grain across the frame, a few dark knots, a soft varnish sheen."""
    wood = np.array([rng.uniform(120, 200), 0, 0], dtype=np.float32)
    wood[1] = wood[0] * rng.uniform(0.6, 0.75)
    wood[2] = wood[0] * rng.uniform(0.35, 0.5)
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    angle = rng.uniform(-0.3, 0.3) + rng.choice([0.0, np.pi / 2])
    u = x * np.cos(angle) + y * np.sin(angle)
    v = -x * np.sin(angle) + y * np.cos(angle)
    wave = v + rng.uniform(4, 14) * np.sin(u / rng.uniform(40, 120))
    grain = 1 + 0.1 * np.sin(2 * np.pi * wave / rng.uniform(5, 14)) + 0.04 * np.sin(2 * np.pi * wave / 2.3)
    for _ in range(int(rng.integers(1, 4))):  # knots: dark rings the grain bends around
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = np.sqrt(((y - cy) / 1.0) ** 2 + ((x - cx) / 2.2) ** 2) / rng.uniform(6, 14)
        grain = grain * (1 - 0.35 * np.exp(-(r**2)) * (1 + 0.3 * np.sin(6 * r)))
    sheen = 1 + rng.uniform(0.05, 0.2) * np.exp(-(((x - rng.uniform(0, width)) / (0.3 * width)) ** 2))
    return (wood * (grain * sheen)[..., None]).astype(np.float32)


def _shadow_edge(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Light multiplier [H, W]: a straight, nearly hard shadow edge at a random angle; the shaded side
    is `depth` darker (a window frame's or a wall's shadow in low sun)."""
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    d = np.cos(angle) * x + np.sin(angle) * y - rng.uniform(-0.2, 0.2)
    softness = rng.uniform(0.005, 0.03)
    shaded = 1 / (1 + np.exp(-d / softness))
    depth = rng.uniform(0.45, 0.7)
    if rng.random() < 0.4:  # a window's mullion: a second, parallel edge makes a band of shade
        shaded = shaded * (1 / (1 + np.exp((d - rng.uniform(0.1, 0.3)) / softness)))
    return (1 - depth * shaded).astype(np.float32)


def table_side_shadow(crop: np.ndarray, rng: np.random.Generator) -> bytes:
    """A garment on a wooden table in low side sun, a hard shadow edge across garment and table."""
    crop = scenes.check_crop(crop)
    width, height = _frame(rng)
    side = round(min(width, height) * rng.uniform(0.55, 0.85))
    layer = scenes.garment_layer(crop, side, rng.uniform(-20, 20), shear=rng.uniform(-0.1, 0.1))
    centre = (
        width // 2 + int(rng.integers(-width // 10, width // 10 + 1)),
        height // 2 + int(rng.integers(-height // 10, height // 10 + 1)),
    )
    coverage = scenes.place(layer, (width, height), centre)
    scene, _ = scenes.dress(_tabletop(height, width, rng), coverage, rng, patterned=rng.random() < 0.5)
    # Raking sun: a long, hard cast shadow of the garment on one side, and the edge across everything.
    direction = rng.uniform(0, 2 * np.pi)
    length = side * rng.uniform(0.04, 0.1)
    shift = (round(np.cos(direction) * length), round(np.sin(direction) * length))
    light = scenes.cast_shadow(coverage, shift, side / 120, rng.uniform(0.3, 0.5)) * _shadow_edge(height, width, rng)
    sun = np.array([1.0, rng.uniform(0.93, 1.0), rng.uniform(0.82, 0.95)], dtype=np.float32)
    photo = np.clip(scene * light[..., None] * sun * rng.uniform(0.95, 1.1), 0, 255)
    if rng.random() < 0.5:  # the phone's lens: slight barrel softness toward the corners
        image = Image.fromarray(np.rint(photo).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(0.6))
        r = scenes.radial(height, width, (0.5, 0.5))[..., None]
        photo = photo * (1 - 0.5 * r) + np.asarray(image, dtype=np.float32) * 0.5 * r
    return scenes.encode(photo, rng)
