"""Finding the garment in a photo: colour against a background model, under uneven light.

`to_fashion_mnist` (contract/preprocess.py) calls `garment_darkness` on the work image (RGB,
longest side 280) and crops what it returns. The steps, each for a hazard of home photos:

1. Flat field. The light is fitted as a smooth surface over every pixel whose chromaticity
   (colour with the brightness divided out) is a border colour's, refitted without the pixels
   far from it, and divided out: a lamp's fall-off, a flash's dark corners and its bright
   centre are not garment. (A surface fitted to the border alone cannot see a hot spot in the
   middle; it is the fallback when too few pixels share the border's colours.)
2. Colour. Garment and background are told apart by CIELAB distance to the border's colours
   (a few k-means clusters: a striped sheet or floorboards have more than one), with the
   threshold set by how far the border's own pixels lie from them. A pink boot on a blue wall
   of the same grey stands out in a* and b*, where a grey-only trim saw nothing.
3. One object. A small opening cuts thin things (hanger wires, a shadow's edge) loose; the
   largest component and those nearly as large are kept, so a peg, a door handle or a hanger
   is not part of the crop, nor a smaller part reaching the frame's edge (a door's edge, a
   rug's border); the kept parts are grown back to their edges.

What comes back is Fashion-MNIST's value per pixel: how much darker than the background the
garment is (or lighter, on a dark ground), zero outside the garment.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LOOK_SIZE = 70
"""The garment is looked for on the work image reduced (by a whole factor) to about this size."""
BORDER = 0.06
"""Width of the border strip that models the background, as a share of each side."""
USUAL = 0.9
"""Border pixels greyer than this quantile of the border (plus TRIM) are not background: the
garment reaching the edge. Measured on the tuning seeds: 0.9 beat 0.5 and 0.75 on floors and
doors (wood tones vary), equal elsewhere."""
CLUSTERS = 3
"""Background colours modelled (k-means on the border's CIELAB values)."""
MIN_DISTANCE = 9.0
"""Smallest CIELAB distance counted as garment (just-noticeable differences are about 2)."""
TRIM = 0.05
"""Smallest grey contrast counted as garment: Zalando trimmed edges 'within 5% of the corner colour'
(Xiao et al. 2017, §2). The one trim level: contract/preprocess.py's TRIM_LEVEL is this on 0–255."""
BORDER_QUANTILE = 0.99
"""The thresholds are at least this quantile of the border pixels' own scores (texture, noise)."""
MARGIN = 1.0
"""…times this (1.3 lost 10 points on bedsheets, gained nothing elsewhere)."""
OPEN = 2
"""Opening iterations: parts this thin (at LOOK_SIZE) are cut loose. 2 beat 1 on doors (hangers)
and cost a flat sandal its thinnest straps."""
CLOSE = 1
"""Closing iterations after the garment is chosen: small gaps in it are garment."""
KEEP_SHARE = 0.15
"""Components at least this share of the largest one are kept with it (a sandal's straps)."""
CHROMA_TOLERANCE = 0.008
"""Pixels within this rg-chromaticity distance of a border colour (or the border's own 95%
quantile) light the flat field. Measured on the tuning seeds: 0.008 beat 0.015, most on
bedsheets, where a garment of the sheet's hue otherwise bends the surface."""
LIGHT_DEGREE = 4
"""Degree of the light's polynomial surface over the whole image (a flash's hot spot needs more
than a quadratic: 4 beat 3 by 2 to 3 points on walls and floors)."""
DARKER = 0.15
"""The light is first fitted to pixels at most this contrast from the border's light (on the
garment's side), then refitted robustly. 0.15 kept a pale grey T-shirt on a pale grey-blue
backdrop whole, where 0.3 let it bend the surface; 0.1 to 0.3 were equal on the tuning seeds."""
TYPICAL = 0.3
"""Inside the garment, its median tone is at least this (0..1): a garment as pale as the wall
keeps a shape. Measured 0.0 to 0.85: 0.3 traded a few points on walls for a visible plain
garment of the wall's grey."""

_SRGB = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], dtype=np.float32)
_WHITE = _SRGB.sum(axis=1)  # D65


def _border_mask(height: int, width: int, pixels: int | None = None) -> np.ndarray:
    """The border strip: BORDER of each side, or `pixels` wide."""
    by, bx = (pixels, pixels) if pixels else (max(1, round(height * BORDER)), max(1, round(width * BORDER)))
    mask = np.zeros((height, width), dtype=bool)
    mask[:by], mask[-by:], mask[:, :bx], mask[:, -bx:] = True, True, True, True
    return mask


def _terms(y: np.ndarray, x: np.ndarray, degree: int = 2) -> list[np.ndarray]:
    """The polynomial surface's terms x^i y^j, i + j <= degree, at coordinates y, x (-1..1;
    broadcastable): 6 terms for a quadratic, 15 for a quartic."""
    ones = np.ones_like(y * x)
    return [ones * x**i * y ** (d - i) for d in range(degree + 1) for i in range(d, -1, -1)]


_DEGREE = {(d + 1) * (d + 2) // 2: d for d in range(1, 7)}  # number of terms -> degree


def _coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.linspace(-1, 1, height, dtype=np.float32)[:, None], np.linspace(-1, 1, width, dtype=np.float32)[None, :])


def _least_squares(terms: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The surface's coefficients by least squares, through the normal equations (an SVD of the
    whole [N, terms] matrix cost 20 ms on a work image; one of the small square system costs
    microseconds). A rank-deficient system (a uniform, tiny, one-row or one-column image, where
    the terms coincide) gets its smallest-norm solution instead of a singular-matrix error."""
    return np.linalg.lstsq(terms.T @ terms, terms.T @ values, rcond=None)[0]


def background_surface(grey: np.ndarray) -> np.ndarray:
    """Coefficients of the background's grey level as a quadratic surface fitted to the border.

    Each fit leaves out the border pixels far from the last estimate (where the garment, a
    hanger or a shadow reaches the edge), so they do not bend the surface."""
    height, width = grey.shape
    border = _border_mask(height, width)
    y, x = _coordinates(height, width)
    terms = np.stack([np.broadcast_to(t, (height, width))[border] for t in _terms(y, x)], axis=1)
    values = grey[border]
    # Start from the median (robust while less than half the border is garment), then refit.
    residual = np.abs(values - np.median(values))
    for _ in range(2):
        use = residual <= max(float(np.median(residual)) * 4, 2.0)
        coeffs = _least_squares(terms[use], values[use])
        residual = np.abs(values - terms @ coeffs)
    return coeffs.astype(np.float32)


def surface_level(coeffs: np.ndarray, height: int, width: int) -> np.ndarray:
    """The fitted surface at every pixel of an image of that size (at least 1)."""
    terms = _terms(*_coordinates(height, width), _DEGREE[len(coeffs)])
    level = sum(c * t for c, t in zip(coeffs, terms, strict=True))
    return np.maximum(level, 1.0).astype(np.float32)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB 0..255 (any shape [..., 3]) -> CIELAB (D65)."""
    c = np.clip(rgb.astype(np.float32) / 255, 0, None)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB.T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab.astype(np.float32)


def _cluster_centres(points: np.ndarray, k: int) -> np.ndarray:
    """k-means centres of border colours [N, 3], started from spread quantiles of lightness."""
    order = np.argsort(points[:, 0])
    centres = points[order[np.linspace(0, len(points) - 1, k).astype(int)]].copy()
    for _ in range(4):
        nearest = _squared_distances(points, centres).argmin(0)
        counts = np.bincount(nearest, minlength=k)
        sums = np.stack([np.bincount(nearest, weights=points[:, c], minlength=k) for c in range(3)], axis=1)
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres).astype(np.float32)
    return centres


def _squared_distances(lab: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """[k, ...]: squared CIELAB distance of every pixel to every centre (one pass per centre)."""
    return np.stack([((lab - centre) ** 2).sum(-1) for centre in centres])


def _reduced(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each factor×factor block (ragged last rows and columns dropped)."""
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    # Two sums over neighbouring axes: 4× faster than one mean over axes (1, 3) of a 5-D view.
    blocks = image[: h * factor, : w * factor].reshape(h, factor, w * factor, *image.shape[2:]).sum(axis=1)
    return blocks.reshape(h, w, factor, *image.shape[2:]).sum(axis=2) * np.float32(1 / factor**2)


def light_surface(rgb: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """Coefficients of the light over the whole image `rgb` [H, W, 3] (grey `grey`): a polynomial
    surface of LIGHT_DEGREE fitted to the pixels of the border's chromaticity, robustly.

    Light multiplies every channel alike, so chromaticity (r, g over r + g + b) stays what the
    wall's is under a flash's hot spot or in a corner's shade, where its brightness does not."""
    height, width = grey.shape
    border = _border_mask(height, width)
    total = np.maximum(rgb.sum(-1), 1.0)
    chroma = np.stack([rgb[..., 0] / total, rgb[..., 1] / total, np.zeros_like(total)], axis=-1)
    distance = np.sqrt(_squared_distances(chroma, _cluster_centres(chroma[border], CLUSTERS)).min(0))
    lit = distance <= max(CHROMA_TOLERANCE, float(np.quantile(distance[border], 0.95)))
    from_border = background_surface(grey)
    if lit.sum() < 0.3 * border.sum():  # the border's colours are nowhere else: light from the border
        return from_border
    y, x = _coordinates(height, width)
    terms = np.stack([np.broadcast_to(t, (height, width))[lit] for t in _terms(y, x, LIGHT_DEGREE)], axis=1)
    terms, values = terms.astype(np.float64), grey[lit].astype(np.float64)
    expected = surface_level(from_border, height, width)[lit]
    # Start from the pixels within DARKER of the border's light, on the garment's side: a pale
    # garment of the wall's hue must not bend the surface, a flash's hot spot (the other side
    # on a light wall, a small step on a dark one) must.
    if float(np.median(expected)) > 127:
        use = values >= expected * (1 - DARKER)
    else:
        use = values <= expected + DARKER * (255 - expected)
    for _ in range(3):  # a garment of the wall's hue is left out as it stands out from the fit
        coeffs = _least_squares(terms[use], values[use])
        residual = np.abs(values - terms @ coeffs)
        use = residual <= max(float(np.median(residual)) * 4, 2.0)
    return coeffs.astype(np.float32)


def colour_distance(rgb: np.ndarray, level: np.ndarray, background: np.ndarray) -> np.ndarray:
    """CIELAB distance [H, W] of each pixel to the nearest colour of the `background` pixels
    (a bool mask), after the flat field."""
    # Flat field: the background brought to one brightness, colours kept (light multiplies).
    lab = _lab(rgb * (float(np.median(level)) / level)[..., None])
    return np.sqrt(_squared_distances(lab, _cluster_centres(lab[background], CLUSTERS)).min(0))


def _stands_out(score: np.ndarray, border: np.ndarray, least: float) -> np.ndarray:
    """Pixels whose score (3×3 median: a weave, grain or a wire a pixel wide drop out) exceeds
    both `least` and what the border's own pixels reach (BORDER_QUANTILE, times MARGIN)."""
    score = ndimage.median_filter(score, size=3)
    return score > max(least, float(np.quantile(score[border], BORDER_QUANTILE)) * MARGIN)


def garment_mask(rgb: np.ndarray, level: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Where the garment is: a bool mask of the image `rgb` [H, W, 3] (0..255) whose background
    grey level is `level` [H, W] and whose grey contrast against it is `contrast` (0..1)."""
    border = _border_mask(*level.shape)
    # The border is background where its grey is the border's usual one: a garment reaching
    # the edge (tight framing) must not become a background colour.
    border &= contrast <= np.quantile(contrast[border], USUAL) + TRIM
    distance = colour_distance(rgb, level, border)
    # In colour, or in grey as Zalando trimmed (5%): either is garment when the border has less.
    found = _stands_out(distance, border, MIN_DISTANCE) | _stands_out(contrast, border, TRIM)
    core = ndimage.binary_opening(found, iterations=OPEN)  # thin wires and edges fall away
    labels, count = ndimage.label(core)
    if count == 0:
        return core
    sizes = np.bincount(labels.ravel())[1:]
    # Within OPEN + 1 pixels of the frame counts as reaching it (the opening erodes from there).
    reaches_edge = np.bincount(labels[_border_mask(*core.shape, OPEN + 1)], minlength=count + 1)[1:] > 0
    chosen = (sizes >= KEEP_SHARE * sizes.max()) & (~reaches_edge | (sizes == sizes.max()))
    kept = np.isin(labels, 1 + np.flatnonzero(chosen))
    # Grow back what the opening took from the kept parts' edges, and only that; then close
    # small gaps and fill: a print or a pale patch inside the garment is garment too.
    grown = ndimage.binary_dilation(kept, iterations=OPEN + 1) & found | kept
    return ndimage.binary_fill_holes(ndimage.binary_closing(grown, iterations=CLOSE))


def garment_darkness(rgb: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """Fashion-MNIST's value per pixel (0..255, float32): the garment's contrast against the
    flattened background, zero outside the garment.

    The garment is looked for on a copy about LOOK_SIZE across (the shape needs no fine detail,
    and looking is the costly part); its contrast and box are taken at full size."""
    # Never reduced below one pixel across: a strip one row high is still looked at.
    factor = max(1, min(max(grey.shape) // LOOK_SIZE, min(grey.shape)))
    small_rgb = _reduced(rgb, factor)
    level = surface_level(light_surface(small_rgb, _reduced(grey, factor)), *grey.shape)
    light_ground = float(np.median(level)) > 127  # a dark garment, as in a product photo
    contrast = np.clip(1 - grey / level if light_ground else (grey - level) / np.maximum(255 - level, 1), 0, 1)
    small = garment_mask(small_rgb, _reduced(level, factor), _reduced(contrast, factor))
    mask = small.repeat(factor, axis=0).repeat(factor, axis=1)
    mask = np.pad(mask, ((0, grey.shape[0] - mask.shape[0]), (0, grey.shape[1] - mask.shape[1])), mode="edge")
    mask = ndimage.binary_dilation(mask, iterations=max(1, factor // 2))  # a camera's soft edge
    # A garment paler than its background (or as pale) would vanish; so the garment's own shading
    # also counts: darker than its median, brighter.
    relative = grey / level
    if mask.any():
        relative = 1 - (1 - TYPICAL) * relative / max(float(np.median(relative[mask])), 1e-3)
    return (np.clip(np.maximum(contrast, relative), 0, 1) * 255 * mask).astype(np.float32)
