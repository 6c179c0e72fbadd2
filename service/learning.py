"""GET /wardrobe/learning: what the page needs to close the loop from corrections to a better model.

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

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contract import metadata as meta
from contract.store import Store
from contract.store.database import describe

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


def learning_summary(store: Store, metadata: dict[str, str], rng: random.Random, audit_size: int = AUDIT_SIZE) -> dict:
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
    audit = rng.sample(confident, min(audit_size, len(confident)))
    return {
        "corrected": len(corrected),
        "waiting": len(waiting),
        "fine_tuned": since is not None,
        "audit": [i.id for i in audit],
    }


def commands(database: str) -> list[str]:
    """The loop, as the commands a person runs (the database URL with any password hidden)."""
    return [
        f"wardrobe train --config configs/finetune.toml --set data.wardrobe='{database}'",
        "wardrobe export runs/<the new run> --out new.onnx",
        "wardrobe report --model new.onnx --compare <the served model> "
        f"--wardrobe '{database}' --out reports/new/ --fail-under wardrobe_gain=0",
        'curl -X POST -H "Authorization: Bearer $WARDROBE_TOKEN" -d \'{"model": "/path/to/new.onnx"}\' '
        "http://<server>/admin/reload",
    ]


async def learning(request: Request, endpoints, item_json, current_model) -> Response:
    """The handler; `endpoints` is service/wardrobe.py's WardrobeEndpoints (its store)."""
    if request.method not in ("GET", "HEAD"):
        return JSONResponse({"error": f"{request.method} {request.url.path}: use GET"}, status_code=405,
                            headers={"Allow": "GET"})  # fmt: skip
    info = current_model()
    store = await endpoints.store()

    def gather() -> tuple[dict, list]:
        summary = learning_summary(store, info.metadata, random.Random())
        return summary, [store.get(i) for i in summary["audit"]]

    summary, audit = await anyio.to_thread.run_sync(gather)
    database = describe(endpoints.url)
    return JSONResponse(summary | {
        "model_sha256": info.sha256,
        "audit": [item_json(i) for i in audit],
        "commands": commands(database),
    })  # fmt: skip
