"""Response headers that tell browsers how little to trust what we send.

ASGI middleware around the whole service, so no route can forget them:
`X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer` on every
response (a JSON error or a thumbnail is never run as a script, and no URL of
this server leaks to another site), and a Content-Security-Policy on every page
and static file, whichever path serves it (/ and /static/index.html alike).
A header a handler set itself is kept.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
# Swagger UI sets inline styles; everything it loads still comes from this server.
DOCS_POLICY = PAGE_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
DOCS_PATHS = frozenset({"/docs", "/static/docs.html"})
"""The API explorer, under either of its paths."""


def content_policy(path: str, content_type: str) -> str | None:
    """The Content-Security-Policy for a response, or None where a policy means nothing (JSON, images)."""
    if path in DOCS_PATHS:
        return DOCS_POLICY
    if path == "/" or path.startswith("/static/") or content_type.startswith("text/html"):
        return PAGE_POLICY
    return None


class SecurityHeaders:
    """Add nosniff and no-referrer to every response, and a CSP to pages and static files."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", ()))
                headers = MutableHeaders(raw=message["headers"])
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "no-referrer")
                if policy := content_policy(scope["path"], headers.get("content-type", "")):
                    headers.setdefault("content-security-policy", policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)
