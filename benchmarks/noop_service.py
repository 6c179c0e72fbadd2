"""The ceiling for benchmarks/load.py: the service's BentoML set-up with all of our work taken out.

Same decorator settings as service/service.py (workers, no access log, no
tracing spans, uvloop/httptools when installed); the upload is read and
dropped, the answer is a constant. Whatever this does per second is the most
any BentoML endpoint configured like ours can do on this machine.

    bentoml serve benchmarks.noop_service:Noop -p 3400
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from starlette.responses import JSONResponse

WORKERS = int(os.environ.get("WARDROBE_WORKERS") or os.cpu_count() or 1)
ANSWER = [{"label": "Sneaker", "class_id": 7, "confidence": 1.0,
           "top_k": [{"label": "Sneaker", "class_id": 7, "probability": 1.0}]}]  # fmt: skip


@bentoml.service(
    workers=WORKERS,
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/classify"]},
)
class Noop:
    @bentoml.api(route="/classify")
    async def classify(self, ctx: bentoml.Context) -> list[dict[str, Any]]:
        async for _ in ctx.request.stream():  # read and dropped, as service/service.py reads it
            pass
        return JSONResponse(ANSWER)
