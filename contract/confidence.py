"""When a prediction counts as unsure: the model's `unsure_threshold` metadata, else a default.

The wardrobe puts an unsure garment on its "Not sure" shelf for the person to decide
(docs/wardrobe.md). A model that records a calibrated threshold in its metadata
(key `unsure_threshold`, a number in (0, 1)) sets it; models without one use
DEFAULT_UNSURE_THRESHOLD.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

log = logging.getLogger(__name__)

UNSURE_THRESHOLD_KEY = "unsure_threshold"
DEFAULT_UNSURE_THRESHOLD = 0.5
"""Below even odds: the model itself rates its answer more likely wrong than right."""


def unsure_threshold(metadata: Mapping[str, str]) -> float:
    """The model's recorded threshold, or the default when it has none (or an unusable one, logged)."""
    raw = metadata.get(UNSURE_THRESHOLD_KEY)
    if raw is None:
        return DEFAULT_UNSURE_THRESHOLD
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        log.warning("model metadata %s=%r is not a number in (0, 1); using %g",
                    UNSURE_THRESHOLD_KEY, raw, DEFAULT_UNSURE_THRESHOLD)  # fmt: skip
        return DEFAULT_UNSURE_THRESHOLD
    return value


def is_unsure(confidence: float, threshold: float) -> bool:
    """Unsure: the top class's probability is below the threshold."""
    return confidence < threshold
