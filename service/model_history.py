"""GET /wardrobe/models: the model registry's history, read-only, for the page's "Teach the model" panel.

Behind the wardrobe's own access rules (the user's token, service/access.py), not the
admin credential: it shows what the registry holds and decides nothing. The JSON is
described in docs/wardrobe.md.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

HISTORY_KEYS = ("sha256", "state", "origin", "architecture", "test_accuracy", "wardrobe_items", "published_at",
                "promoted_at", "demoted_at", "decided_at", "canary", "note")  # fmt: skip
"""What the page sees of each model (no internal names such as who published it)."""


async def model_history(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        return JSONResponse({"error": f"{request.method} {request.url.path}: use GET"}, status_code=405,
                            headers={"Allow": "GET"})  # fmt: skip
    records = await anyio.to_thread.run_sync(request.app.state.registry.records)
    return JSONResponse({
        "serving": request.app.state.models.sha256,
        "champion": next((r.sha256 for r in records if r.state == "champion"), None),
        "models": [{k: v for k, v in r.as_json().items() if k in HISTORY_KEYS} for r in records],
    })  # fmt: skip
