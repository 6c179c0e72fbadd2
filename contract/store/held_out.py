"""Which wardrobe items a model never trained on: the one held-out selection.

The canary (service/canary.py), `wardrobe report --wardrobe` and fine-tuning all
measure a model on the same items: the held-out ids its metadata lists (a model
fine-tuned on a wardrobe), else every item a person labelled (a model that never
saw the wardrobe). Items the model labelled alone never count: their label is the
model's own guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from contract import metadata as meta
from contract.store.items import INPUT_SHAPE, LabelledImage


class HeldOutError(ValueError):
    """The wardrobe holds none of the items a model says it held out (another wardrobe?)."""


@dataclass(frozen=True)
class HeldOut:
    """The held-out items, oldest first, and a sentence saying which they are."""

    records: list[LabelledImage]
    which: str

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(r.item.id for r in self.records)

    @property
    def images(self) -> np.ndarray:
        """uint8 [N, 28, 28], the exact model inputs."""
        if not self.records:
            return np.zeros((0, *INPUT_SHAPE), np.uint8)
        return np.stack([r.image for r in self.records])

    @property
    def labels(self) -> list[str]:
        """The person's label of each item (a class name)."""
        return [r.item.label for r in self.records]


def held_out_for(
    records: Iterable[LabelledImage], metadata: Mapping[str, str], wardrobe_sha256: str | None = None
) -> HeldOut:
    """The items of a wardrobe (`records`: Store.labelled_images() or an export's) that the model with
    `metadata` never trained on. `wardrobe_sha256`, the export's checksum when known, only sharpens the
    sentence: whether these are the very items the model was fine-tuned beside."""
    person = [r for r in records if r.item.label_source == "person"]
    ids = meta.held_out_ids(metadata)
    if ids is None:
        return HeldOut(
            person, f"all {len(person)} items a person labelled (the model was not fine-tuned on a wardrobe)"
        )
    wanted = set(ids)
    kept = [r for r in person if r.item.id in wanted]
    if not kept:
        raise HeldOutError(f"none of the model's {len(ids)} held-out items is in this wardrobe (another wardrobe?)")
    same = wardrobe_sha256 is not None and metadata.get(meta.WARDROBE_SHA256) == wardrobe_sha256
    origin = "the export it was fine-tuned on" if same else "this wardrobe (not the export it was fine-tuned on)"
    return HeldOut(kept, f"the {len(kept)} of its {len(ids)} held-out items found in {origin}")
