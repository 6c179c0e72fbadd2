"""contract/isolate.py through to_fashion_mnist: each hazard of home photos on seeded photos.

A garment is rendered from real test crops into a scene with one hazard, and the crop that
comes back must have the original's silhouette (intersection over union of the pixels above a
low level), so neither the hazard nor a piece of background is mistaken for garment.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from contract.isolate import garment_darkness
from contract.preprocess import decode_image, to_fashion_mnist
from photo_sim import scenes

GARMENTS = range(6)  # test-split indices: a top, a trouser, a pullover, a dress, a coat, a sandal…


def silhouette_iou(crop: np.ndarray, original: np.ndarray, level: int = 40) -> float:
    a, b = crop > level, original > level
    return float((a & b).sum() / max((a | b).sum(), 1))


def jpeg(photo: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def scene(crop: np.ndarray, wall: np.ndarray, colour: np.ndarray, size=(300, 360)) -> tuple[np.ndarray, np.ndarray]:
    """The garment (absorbing `colour`, luma 1) centred on a wall [H, W, 3]; and its coverage."""
    coverage = scenes.place(scenes.garment_layer(crop, 220, 0.0), size, (size[0] // 2, size[1] // 2 + 20))
    opacity = np.clip(coverage * 3, 0, 1)[..., None]
    garment = scenes.PAPER * np.clip(1 - coverage[..., None] * colour, 0.02, 1)
    return wall * (1 - opacity) + garment * opacity, coverage


def crop_of(photo: np.ndarray) -> np.ndarray:
    return to_fashion_mnist(decode_image(jpeg(photo)))


def flat_wall(rgb, size=(300, 360)) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, dtype=np.float32), (size[1], size[0], 3)).copy()


def assert_silhouettes(fmnist, make_photo, least: float) -> None:
    ious = [silhouette_iou(crop_of(make_photo(fmnist.test_images[i])), fmnist.test_images[i]) for i in GARMENTS]
    assert min(ious) >= least, ious


def test_a_garment_of_the_walls_grey_in_another_colour_is_found(fmnist):
    # A pink garment on a blue wall, both of one grey: only colour tells them apart.
    wall = flat_wall((70, 110, 200))
    wall_grey = float(wall[0, 0] @ scenes.LUMA)
    pink = np.array([235, 80, 150], dtype=np.float32)
    pink *= wall_grey / float(pink @ scenes.LUMA)

    def photo(crop):
        coverage = scenes.place(scenes.garment_layer(crop, 220, 0.0), (300, 360), (150, 200))
        opacity = np.clip(coverage * 3, 0, 1)[..., None]
        return wall * (1 - opacity) + pink * opacity

    assert_silhouettes(fmnist, photo, 0.6)


def test_a_flash_with_dark_corners_is_not_garment(fmnist):
    light = 1 - 0.55 * np.clip(scenes.radial(360, 300, (0.5, 0.5)), 0, 1) ** 2  # corners at 45%

    def photo(crop):
        picture, _ = scene(crop, flat_wall((225, 222, 215)), np.array([1.0, 1.0, 1.0]))
        return picture * light[..., None]

    assert_silhouettes(fmnist, photo, 0.6)


def test_a_hanger_beside_the_garment_stays_out_of_the_crop(fmnist):
    # Compared with the same photo without the hanger: a hanger in the crop would shrink and
    # move the garment in it. (One whose bar lies on the garment's shoulders can leave its bar's
    # ends in the crop: the hook goes, the bar is as thick as a garment's edge.)
    rng, ious = np.random.default_rng(0), []
    size = (420, 360)
    for i in GARMENTS:
        crop = fmnist.test_images[i]
        coverage = scenes.place(scenes.garment_layer(crop, 220, 0.0), size, (150, 200))
        opacity = np.clip(coverage * 3, 0, 1)[..., None]
        wall = flat_wall((190, 200, 170), size)
        picture = wall * (1 - opacity) + scenes.PAPER * (1 - coverage[..., None] * 0.9) * opacity
        mask, _ = scenes.hanger(size, (350, 110), 110, 40, rng)
        hung = scenes.paint(picture, mask, np.array([40.0, 40, 45]))
        ious.append(silhouette_iou(crop_of(hung), crop_of(picture)))
    # A hanger thick enough to be 15% of a thin garment (a trouser) is kept with it.
    assert np.mean(ious) >= 0.9 and min(ious) >= 0.6, ious


def test_a_patterned_garment_is_one_garment(fmnist):
    rng = np.random.default_rng(1)

    def photo(crop):
        coverage = scenes.place(scenes.garment_layer(crop, 220, 0.0), (300, 360), (150, 200))
        dressed, _ = scenes.dress(flat_wall((120, 160, 120)), coverage, rng, patterned=True)
        return dressed

    assert_silhouettes(fmnist, photo, 0.6)


@pytest.mark.parametrize(
    "style", ["shop", "bedsheet", "wall_flash", "floor", "door", "lamp_bedspread", "table_side_shadow"]
)
def test_photo_styles_are_reproducible_from_the_seed(fmnist, style):
    from photo_sim.photo_styles import style_set

    crops = fmnist.test_images[:2]
    first = style_set(style, crops, seed=3)
    assert first == style_set(style, crops, seed=3)
    assert first != style_set(style, crops, seed=4)
    assert all(decode_image(photo).size[0] >= 100 for photo in first)


def test_an_unknown_style_is_named():
    from photo_sim.photo_styles import style_set

    with pytest.raises(ValueError, match="unknown photo style 'beach'"):
        style_set("beach", [], seed=0)


DEGENERATE = [(1, 1), (2, 2), (3, 3), (1, 300), (300, 1), (2, 500), (100, 3), (8, 8), (28, 28), (300, 360)]


@pytest.mark.parametrize("size", DEGENERATE, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("fill", ["white", "black", "grey", "noise", "ramp"])
@pytest.mark.filterwarnings("error")  # "mean of empty slice" and the like count as failures
def test_the_isolator_never_raises_on_uniform_tiny_or_one_row_images(size, fill):
    width, height = size
    rng = np.random.default_rng(0)
    rgb = {
        "white": np.full((height, width, 3), 255.0),
        "black": np.zeros((height, width, 3)),
        "grey": np.full((height, width, 3), 128.0),
        "noise": rng.uniform(0, 255, (height, width, 3)),
        "ramp": np.broadcast_to(np.linspace(0, 255, width)[None, :, None], (height, width, 3)),
    }[fill].astype(np.float32)
    with np.errstate(divide="raise", invalid="raise", over="raise"):  # no NaN, no division by zero either
        darkness = garment_darkness(rgb, rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    assert darkness.shape == (height, width) and np.isfinite(darkness).all()
    if fill != "noise" and fill != "ramp":
        assert not darkness.any()  # a uniform image holds no garment
