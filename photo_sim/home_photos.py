"""Three ways people photograph their own clothes at home, rendered from Fashion-MNIST crops.

- `wall_flash`: hung on a coloured or wallpapered wall (a hanger or a peg), lit by the phone's
  flash: a bright centre, dark corners, a hard shadow just beside the garment.
- `floor`: lying on a wooden floor (planks, grain, seams) or a patterned rug, window light
  falling off across the frame, photographed from above.
- `door`: on a hanger hooked over the top of a panelled door, the handle beside it, the wall
  beyond the door's edge, photographed from one side (perspective: one edge taller).

Half the garments wear a pattern (stripes, checks, a print: `photo_sim/scenes.py`). Each function
takes a uint8 [28, 28] crop and a numpy Generator and returns phone-JPEG bytes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from photo_sim import scenes


def _frame(rng: np.random.Generator) -> tuple[int, int]:
    width = int(rng.integers(260, 461))
    return width, round(width * rng.uniform(1.0, 1.35))  # phones shoot portrait


def _wall(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A painted wall (any colour, often saturated) or wallpaper (stripes, dots) of two colours."""
    hue_colour = rng.uniform(40, 235, size=3)
    base = np.clip(hue_colour * rng.uniform(0.8, 1.1), 25, 245).astype(np.float32)
    wall = np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    if rng.random() < 0.45:
        period = rng.uniform(0.04, 0.15) * width
        mask, _ = scenes.pattern(height, width, period, rng)
        other = np.clip(base * rng.uniform(0.6, 1.3, size=3), 0, 250)
        wall = wall * (1 - mask[..., None]) + other * mask[..., None]
    texture = rng.normal(0, 2.5, size=(height, width, 1)).astype(np.float32)  # paint, plaster
    return wall + texture


def _flash(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A phone flash: a hot spot near the centre, falling to dark corners."""
    r = scenes.radial(height, width, (rng.uniform(0.35, 0.6), rng.uniform(0.35, 0.65)))
    spot = rng.uniform(0.15, 0.45) * np.exp(-(r**2) / (2 * rng.uniform(0.08, 0.2)))
    corners = rng.uniform(0.3, 0.6)
    return ((1 - corners * np.clip(r, 0, 1.4) ** 2 / 1.4**2) * (1 + spot) * rng.uniform(0.85, 1.0)).astype(np.float32)


def wall_flash(crop: np.ndarray, rng: np.random.Generator) -> bytes:
    """A garment hung on a coloured or patterned wall, photographed with the phone's flash."""
    crop = scenes.check_crop(crop)
    width, height = _frame(rng)
    side = round(width * rng.uniform(0.6, 0.85))
    layer = scenes.garment_layer(crop, side, rng.uniform(-6, 6), shear=rng.uniform(-0.08, 0.08))
    centre = (width // 2 + int(rng.integers(-width // 12, width // 12 + 1)), round(height * rng.uniform(0.5, 0.6)))
    coverage = scenes.place(layer, (width, height), centre)
    scene = _wall(height, width, rng)
    rows = np.flatnonzero(coverage.max(axis=1) > 0.2)
    top = int(rows[0]) if len(rows) else centre[1]
    if rng.random() < 0.7:  # a hanger, its bar behind the garment's shoulders
        hook = (centre[0], max(8, top - round(side * rng.uniform(0.12, 0.2))))
        mask, colour = scenes.hanger((width, height), hook, round(side * rng.uniform(0.7, 1.0)), top - hook[1] + 4, rng)
    else:  # a peg or a nail in the wall
        mask = (scenes.radial(height, width, ((top - side * 0.05) / height, centre[0] / width)) < 0.025).astype(
            np.float32
        )
        colour = rng.uniform(20, 200, size=3).astype(np.float32)
    scene = scenes.paint(scene, mask, colour)
    scene, _ = scenes.dress(scene, coverage, rng, patterned=rng.random() < 0.5)
    # The flash sits beside the lens: a hard, narrow shadow down and to one side.
    shift = (
        int(rng.choice([-1, 1]) * rng.integers(side // 40, side // 15 + 1)),
        int(rng.integers(side // 40, side // 12 + 1)),
    )
    shadow = scenes.cast_shadow(np.maximum(coverage, mask), shift, side / 150, rng.uniform(0.25, 0.5))
    light = _flash(height, width, rng) * shadow
    cool = np.array([rng.uniform(0.95, 1.0), 1.0, rng.uniform(1.0, 1.06)], dtype=np.float32)
    return scenes.encode(scene * light[..., None] * cool, rng)


def _planks(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Floorboards: planks of one wood in slightly different tones, grain along them, dark seams."""
    wood = np.array([rng.uniform(110, 215), 0, 0], dtype=np.float32)
    wood[1] = wood[0] * rng.uniform(0.68, 0.8)
    wood[2] = wood[0] * rng.uniform(0.42, 0.6)
    plank = rng.uniform(0.08, 0.16) * height
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    index = np.floor(y / plank).astype(int)
    tones = rng.uniform(0.85, 1.12, size=int(index.max()) + 2).astype(np.float32)
    grain = 1 + 0.06 * np.sin(2 * np.pi * (y / rng.uniform(3, 9) + 0.6 * np.sin(x / rng.uniform(20, 60))))
    seam = np.where(np.mod(y, plank) < 2, 0.55, 1.0)
    boards = tones[index] * grain * seam
    ends = np.mod(x + index * rng.uniform(40, 140), rng.uniform(180, 400)) < 2  # staggered butt joints
    boards = np.where(ends, 0.6, boards)
    return (wood * boards[..., None]).astype(np.float32)


def _rug(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A rug: a coloured ground, a lattice or check motif in a second colour, a border, pile noise."""
    ground = rng.uniform(50, 220, size=3).astype(np.float32)
    motif = np.clip(ground * rng.uniform(0.5, 1.4, size=3), 10, 245)
    mask, _ = scenes.pattern(height, width, rng.uniform(0.06, 0.18) * width, rng)
    rug = ground * (1 - mask[..., None]) + motif * mask[..., None]
    border = round(rng.uniform(0.03, 0.08) * width)
    edge = np.zeros((height, width), dtype=bool)
    edge[:border], edge[-border:], edge[:, :border], edge[:, -border:] = True, True, True, True
    rug[edge] = np.clip(ground * rng.uniform(0.4, 0.8), 0, 255)
    return rug + rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)


def floor(crop: np.ndarray, rng: np.random.Generator) -> bytes:
    """A garment lying on a wooden floor or a rug, photographed from above by window light."""
    crop = scenes.check_crop(crop)
    width, height = _frame(rng)
    side = round(width * rng.uniform(0.6, 0.9))
    layer = scenes.garment_layer(crop, side, rng.uniform(-12, 12))
    centre = (
        width // 2 + int(rng.integers(-width // 10, width // 10 + 1)),
        height // 2 + int(rng.integers(-height // 10, height // 10 + 1)),
    )
    coverage = scenes.place(layer, (width, height), centre)
    ground = _planks(height, width, rng) if rng.random() < 0.55 else _rug(height, width, rng)
    scene, _ = scenes.dress(ground, coverage, rng, patterned=rng.random() < 0.5)
    # Window light: a strong fall-off from one side, and the garment's soft contact shadow.
    angle = rng.uniform(0, 2 * np.pi)
    y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :]
    light = 1 + rng.uniform(0.2, 0.5) * (np.cos(angle) * x + np.sin(angle) * y)
    light = light * scenes.cast_shadow(coverage, (2, 3), side / 30, rng.uniform(0.1, 0.25))
    daylight = np.array([rng.uniform(0.92, 1.0), 1.0, rng.uniform(1.0, 1.1)], dtype=np.float32)
    return scenes.encode(scene * light[..., None] * daylight * rng.uniform(0.8, 1.05), rng)


def _door(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A panelled door filling most of the frame, the wall beyond its edge; and the edge's column."""
    wall = rng.uniform(120, 235, size=3).astype(np.float32)
    door = rng.choice([np.array([235.0, 232, 222]), rng.uniform(90, 225, size=3)]).astype(np.float32)
    edge = round(width * rng.uniform(0.8, 0.92))
    scene = np.broadcast_to(wall, (height, width, 3)).copy()
    scene[:, :edge] = door
    scene[:, edge : edge + max(3, width // 60)] = door * 0.8  # the frame's trim
    # Raised panels: a light top-left and a dark bottom-right edge around each rectangle.
    for top, bottom in ((0.06, 0.45), (0.52, 0.96)):
        y0, y1 = round(top * height), round(bottom * height)
        for left, right in ((0.08, 0.42), (0.5, 0.84)):
            x0, x1 = round(left * edge / 0.92), round(right * edge / 0.92)
            scene[y0 : y0 + 3, x0:x1] = door * 1.06
            scene[y0:y1, x0 : x0 + 3] = door * 1.06
            scene[y1 - 3 : y1, x0:x1] = door * 0.82
            scene[y0:y1, x1 - 3 : x1] = door * 0.82
    return np.clip(scene, 0, 255), edge


def _perspective(image: Image.Image, squeeze: float, side: str) -> Image.Image:
    """Seen from one side: one edge `squeeze` of the height taller than the other (a homography)."""
    w, h = image.size
    dy = squeeze * h / 2
    # The frame shows a trapezoid of the scene: its near edge spans less of the scene than its far
    # one, so the near side looks enlarged; the frame stays full (no empty wedges).
    trapezoid = [(0, dy), (w, 0), (w, h), (0, h - dy)] if side == "left" else [(0, 0), (w, dy), (w, h - dy), (0, h)]
    frame = [(0, 0), (w, 0), (w, h), (0, h)]
    # Solve for the 8 coefficients mapping frame points (x, y) to scene points (u, v).
    rows, rhs = [], []
    for (x, y), (u, v) in zip(frame, trapezoid, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    coeffs = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64))
    return image.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR)


def door(crop: np.ndarray, rng: np.random.Generator) -> bytes:
    """A garment on a hanger hooked over a door's top, the handle beside it, photographed at an angle."""
    crop = scenes.check_crop(crop)
    width, height = _frame(rng)
    scene, edge = _door(height, width, rng)
    side = round(width * rng.uniform(0.55, 0.75))
    layer = scenes.garment_layer(crop, side, rng.uniform(-4, 4))
    centre = (round(edge * rng.uniform(0.4, 0.55)), round(height * rng.uniform(0.45, 0.55)))
    coverage = scenes.place(layer, (width, height), centre)
    rows = np.flatnonzero(coverage.max(axis=1) > 0.2)
    top = int(rows[0]) if len(rows) else centre[1]
    hook = (centre[0], max(6, round(top * rng.uniform(0.1, 0.4))))
    mask, colour = scenes.hanger((width, height), hook, round(side * rng.uniform(0.7, 1.0)), top - hook[1] + 4, rng)
    scene = scenes.paint(scene, mask, colour)
    handle = scenes.radial(height, width, (rng.uniform(0.5, 0.6), (edge - width * 0.06) / width)) < 0.03
    scene = scenes.paint(scene, handle.astype(np.float32), rng.uniform(30, 190, size=3).astype(np.float32))
    scene, _ = scenes.dress(scene, coverage, rng, patterned=rng.random() < 0.5)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    light = (1.05 - rng.uniform(0.1, 0.35) * y) * scenes.cast_shadow(coverage, (3, 4), side / 25, 0.15)
    lamp = np.array([1.0, rng.uniform(0.92, 0.99), rng.uniform(0.8, 0.95)], dtype=np.float32)
    photo = np.clip(scene * np.broadcast_to(light, (height, width))[..., None] * lamp, 0, 255)
    image = Image.fromarray(np.rint(photo).astype(np.uint8), "RGB")
    image = _perspective(image, rng.uniform(0.08, 0.2), str(rng.choice(["left", "right"])))
    return scenes.encode(np.asarray(image, dtype=np.float32), rng, blur=(0.2, 0.8))
