"""The family of photo styles the service is measured on, by name: one generator per situation.

Each style turns a uint8 [28, 28] Fashion-MNIST crop and a numpy Generator into encoded image
bytes. `shop` is the product photo (`photo_sim/photolike.py`), `bedsheet` the first home
snapshot (`photo_sim/bedsheet.py`), `wall_flash`, `floor` and `door` `photo_sim/home_photos.py`, and the
EVALUATION_ONLY ones `photo_sim/eval_photos.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from contract.preprocess import decode_image, to_fashion_mnist, to_model_input
from contract.stats import wilson_interval
from photo_sim import bedsheet, eval_photos, home_photos, photolike

Style = Callable[[np.ndarray, np.random.Generator], bytes]


def _shop(crop: np.ndarray, rng: np.random.Generator) -> bytes:
    return photolike.make_photo_like(crop, rng)[0]


STYLES: dict[str, Style] = {
    "shop": _shop,
    "bedsheet": bedsheet.make_unseen_style,
    "wall_flash": home_photos.wall_flash,
    "floor": home_photos.floor,
    "door": home_photos.door,
    "lamp_bedspread": eval_photos.lamp_bedspread,
    "table_side_shadow": eval_photos.table_side_shadow,
}
EVALUATION_ONLY = ("lamp_bedspread", "table_side_shadow")
"""Styles used only to measure: never trained, tuned or calibrated on, with any seed."""
TUNING_STYLES = tuple(name for name in STYLES if name not in EVALUATION_ONLY)
"""The styles training, preprocessing and calibration may look at (on their tuning seeds)."""
DESCRIPTIONS = {
    "shop": "product photo: light backdrop, even light (photo_sim/photolike.py)",
    "bedsheet": "on a striped or checked bedsheet, one lamp, tilted phone",
    "wall_flash": "hung on a coloured or papered wall, hanger or peg, phone flash",
    "floor": "lying on floorboards or a rug, window light, from above",
    "door": "on a hanger over a panelled door, handle beside it, shot at an angle",
    "lamp_bedspread": "on a bedspread of large coloured motifs, warm bedside lamp near a corner (evaluation only)",
    "table_side_shadow": "on a wooden tabletop, low side sun, a hard shadow edge across it (evaluation only)",
}


def style_set(style: str, images: Sequence[np.ndarray], seed: int) -> list[bytes]:
    """Photos of many crops in one style, reproducible from the seed."""
    if style not in STYLES:
        raise ValueError(f"unknown photo style {style!r} (known: {', '.join(STYLES)})")
    rng = np.random.default_rng(seed)
    return [STYLES[style](crop, rng) for crop in images]


def style_scores(classifier, photos: Sequence[bytes], labels: np.ndarray) -> dict:
    """Accuracy (Wilson 95%), the share marked `unsure` and accuracy when sure, through the
    service's preprocessing and the classifier's own `unsure` threshold; also the crops."""
    crops = [to_fashion_mnist(decode_image(data)) for data in photos]
    probabilities = classifier.probabilities(to_model_input(crops))
    predicted = probabilities.argmax(axis=1)
    right = predicted == np.asarray(labels)
    threshold = classifier.info.unsure_threshold  # None: a model exported before calibration
    sure = probabilities.max(axis=1) >= threshold if threshold is not None else None
    n, n_sure = len(right), int(sure.sum()) if sure is not None else 0
    return {
        "images": n,
        "accuracy": float(right.mean()),
        "accuracy_wilson": list(wilson_interval(int(right.sum()), n)),
        "unsure_share": float(1 - sure.mean()) if sure is not None else None,
        "sure_images": n_sure if sure is not None else None,
        "accuracy_when_sure": float(right[sure].mean()) if n_sure else None,
        "accuracy_when_sure_wilson": list(wilson_interval(int(right[sure].sum()), n_sure)) if n_sure else None,
        "crops": crops,
        "predicted": predicted,
        "confidence": probabilities.max(axis=1),
    }
