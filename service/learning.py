"""What GET /wardrobe/learning (service/wardrobe.py) answers: closing the loop from corrections to a better model.

How many of the person's corrections the served model has not learned from yet (made
after it was exported, or all of them for a model never fine-tuned), the commands that
fine-tune on them (training is a CLI job: minutes of CPU, never inside a serving worker),
and an audit: a small random sample of items the model was confident about and nobody
checked, for the person to confirm or correct, so the held-out items are not only the hard
cases of the "Not sure" shelf (the practice of active-learning tools).
"""

from __future__ import annotations

import random
from datetime import datetime

from contract import metadata as meta
from contract.store import Item, Store

AUDIT_SIZE = 6
"""Confident, unchecked items the page asks the person to confirm."""


def _all(store: Store, corrected: bool) -> list:
    items, before = [], None
    while True:
        page = store.page(corrected=corrected, limit=1000, before=before)
        items += page.items
        if page.next_before is None:
            return items
        before = page.next_before


def learning_summary(
    store: Store, metadata: dict[str, str], rng: random.Random | None = None, audit_size: int = AUDIT_SIZE
) -> tuple[dict, list[Item]]:
    """Corrections waiting for a fine-tune, and an audit sample of confident unchecked items."""
    corrected = _all(store, corrected=True)
    exported = metadata.get(meta.EXPORTED_AT)
    since = None
    if meta.WARDROBE_SHA256 in metadata and exported:
        try:
            since = datetime.fromisoformat(exported.replace("Z", "+00:00"))
        except ValueError:
            since = None
    waiting = [i for i in corrected if since is None or (i.corrected_at is not None and i.corrected_at > since)]
    confident = [i for i in _all(store, corrected=False) if not i.unsure]
    audit = (rng or random.Random()).sample(confident, min(audit_size, len(confident)))
    summary = {"corrected": len(corrected), "waiting": len(waiting), "fine_tuned": since is not None}
    return summary, audit


def learning_commands(database: str) -> list[str]:
    """The loop, as the commands a person runs (the database URL with any password hidden)."""
    return [
        f"wardrobe train --config configs/finetune.toml --set data.wardrobe='{database}'",
        f"WARDROBE_DB='{database}' wardrobe export runs/<the new run> --out new.onnx --publish",
        f"WARDROBE_DB='{database}' wardrobe models promote <the SHA-256 it printed>",
    ]
