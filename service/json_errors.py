"""Plain-text 404 and 405 from BentoML's router become `{"error": ...}` JSON, as every client error is.

BentoML routes /classify for POST only and answers any other method with
Starlette's plain-text "Method Not Allowed"; the contract says a client error is
JSON saying what was wrong. Answers with a JSON (or any other) body pass untouched.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.uploads import FIELD

POST_ONLY = frozenset({"/classify"})
"""BentoML's own endpoints: POST with files in field `images`."""


class JsonErrors:
    """Replace a plain-text 405 (and 404) answer with JSON naming what to do instead."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        replaced = False

        async def send_json_errors(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                headers = Headers(raw=message.get("headers", []))
                if message["status"] in (404, 405) and headers.get("content-type", "").startswith("text/plain"):
                    replaced = True
                    return await self._error(scope, message["status"], headers)(scope, receive, send)
            elif replaced:
                return  # the plain-text body is dropped
            await send(message)

        await self.app(scope, receive, send_json_errors)

    @staticmethod
    def _error(scope: Scope, status: int, headers: Headers) -> JSONResponse:
        method, path = scope["method"], scope["path"]
        if status == 405:
            hint = f"use POST with files in field '{FIELD}'" if path in POST_ONLY else "method not allowed"
            allow = {"Allow": headers["allow"]} if "allow" in headers else {}
            return JSONResponse({"error": f"{method} {path}: {hint}"}, status_code=405, headers=allow)
        return JSONResponse({"error": f"no such endpoint: {path} (see /docs)"}, status_code=404)
