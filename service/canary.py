"""The canary: a candidate model against the champion on the wardrobe's held-out items.

The items are the wardrobe's held-out items for the candidate (contract/store's
`held_out_for`: the ids its metadata lists, else every item a person labelled),
turned into model input by contract/preprocess's `to_model_input`. Both models
answer the same items, so the comparison is paired: the candidate is refused
when its accuracy falls more than MAX_DROP below the champion's. Each accuracy
comes with its 95 % Wilson interval (contract/stats.py), so a refusal shows how much the
figures can be trusted on this many items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.preprocess import to_model_input
from contract.runtime import Classifier
from contract.stats import wilson_interval
from contract.store import HeldOut, HeldOutError, Store, held_out_for

MAX_DROP = 0.005
"""A candidate may score at most this much (0.5 points) below the champion on the held-out items."""
MIN_ITEMS = 10
"""Fewer held-out items than this and the canary cannot judge (service/promotion.py refuses to replace a
champion on it unless forced): not one per class, and one item moves an accuracy by over 10 points."""


@dataclass(frozen=True)
class Canary:
    """The figures of one canary run."""

    items: int
    which: str
    champion: float | None
    candidate: float | None
    champion_interval: tuple[float, float] | None
    candidate_interval: tuple[float, float] | None
    passed: bool
    note: str

    def as_dict(self) -> dict:
        return {
            "items": self.items, "which": self.which, "champion_accuracy": self.champion,
            "candidate_accuracy": self.candidate, "champion_wilson95": self.champion_interval,
            "candidate_wilson95": self.candidate_interval, "passed": self.passed, "note": self.note,
        }  # fmt: skip


def _accuracy(model: Classifier, images: np.ndarray, labels: list[str]) -> tuple[float, tuple[float, float]]:
    truth = np.array([model.classes.index(label) if label in model.classes else -1 for label in labels])
    correct = int(np.sum(model.logits(images).argmax(1) == truth))
    low, high = wilson_interval(correct, len(labels))
    return correct / len(labels), (round(low, 4), round(high, 4))


def run_canary(champion: Classifier, candidate: Classifier, held: HeldOut | None, max_drop: float = MAX_DROP) -> Canary:
    """Compare the two models on `held` (None or empty: nothing to compare on, so only the contract counts)."""
    if held is None or len(held) == 0:
        which = held.which if held is not None else "no wardrobe"
        note = f"no labelled wardrobe items to compare on ({which}); only the model contract was checked"
        return Canary(0, which, None, None, None, None, True, note)
    images = to_model_input(held.images)
    old, old_ci = _accuracy(champion, images, held.labels)
    new, new_ci = _accuracy(candidate, images, held.labels)
    passed = new >= old - max_drop - 1e-12
    verdict = "passes" if passed else f"is more than {max_drop * 100:g} points below the champion"
    note = (
        f"candidate {new:.4f} (95% Wilson interval {new_ci[0]:.4f}–{new_ci[1]:.4f}) vs champion {old:.4f} "
        f"({old_ci[0]:.4f}–{old_ci[1]:.4f}) on {held.which}: {verdict}"
    )
    return Canary(len(held), held.which, old, new, old_ci, new_ci, passed, note)


def held_out_items(store: Store, candidate: Classifier) -> HeldOut:
    """The wardrobe's held-out items for `candidate` (none, saying why, when they are not in this wardrobe)."""
    try:
        return held_out_for(store.labelled_images(), candidate.info.metadata)
    except HeldOutError as exc:
        return HeldOut([], str(exc))
