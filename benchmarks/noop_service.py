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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WORKERS = int(os.environ.get("WARDROBE_WORKERS") or os.cpu_count() or 1)
ANSWER = [{"label": "Sneaker", "class_id": 7, "confidence": 1.0,
           "top_k": [{"label": "Sneaker", "class_id": 7, "probability": 1.0}]}]  # fmt: skip


class DropBody:
    """Read and drop the upload, hand BentoML an empty JSON body (as the upload gate does)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/classify":
            return await self.app(scope, receive, send)
        while (await receive()).get("more_body", False):
            pass
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + [
            (b"content-type", b"application/json")
        ]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"{}", "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@bentoml.service(
    workers=WORKERS,
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/classify"]},
)
class Noop:
    @bentoml.api(route="/classify")
    async def classify(self, ctx: bentoml.Context) -> list[dict[str, Any]]:
        return JSONResponse(ANSWER)


Noop.add_asgi_middleware(DropBody)
