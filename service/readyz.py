"""/readyz names the model this worker serves, by SHA-256 (never by path), with its recorded test accuracy."""

from __future__ import annotations

from starlette.datastructures import State
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.model_standing import standing


class ModelOnReadyz:
    """/readyz answers, when ready, `{"ready": true, "model_sha256": ..., "model_test_accuracy": ...,
    "shipped_test_accuracy": ..., "warning": ...}` (service/model_standing.py) instead of BentoML's empty body.

    `state` is the wardrobe app's `app.state`, where the worker's Wardrobe puts its ModelSwitch as `models`
    and the shipped model's figure as `shipped`."""

    def __init__(self, app: ASGIApp, *, state: State):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/readyz":
            return await self.app(scope, receive, send)
        status: list[int] = []

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                if message["status"] != 200:
                    await send(message)
            elif status and status[0] != 200:
                await send(message)

        await self.app(scope, receive, capture)
        if status and status[0] == 200:
            models, shipped = getattr(self.state, "models", None), getattr(self.state, "shipped", None)
            body = standing(models.current.classifier, shipped) if models and shipped else {"model_sha256": None}
            await JSONResponse({"ready": True, **body})(scope, receive, send)
