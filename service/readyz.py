"""/readyz names the model this worker serves, by SHA-256 (never by path)."""

from __future__ import annotations

from starlette.datastructures import State
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


class ModelOnReadyz:
    """/readyz answers, when ready, `{"ready": true, "model_sha256": ...}` instead of BentoML's empty body.

    `state` is the wardrobe app's `app.state`, where the worker's Wardrobe puts its ModelSwitch as `models`."""

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
            models = getattr(self.state, "models", None)
            await JSONResponse({"ready": True, "model_sha256": models.sha256 if models else None})(scope, receive, send)
