"""Who may use the wardrobe: a bearer token, or, without one, only a server on a loopback address.

ASGI middleware in front of the wardrobe's endpoints (service/wardrobe.py). With
WARDROBE_TOKEN set, every request under /wardrobe/ must carry
`Authorization: Bearer <token>` (compared in constant time) or gets 401. Without
a token the wardrobe is a single person's on their own machine: it answers only
when the server listens on a loopback address (127.0.0.1, ::1), and refuses with
403 and a message saying what to set on any other bind; the worker logs why when
it starts. The page itself, /classify and the health endpoints stay open.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import socket
import sys

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("bentoml.wardrobe")  # under "bentoml": its log handlers apply

PREFIX = "/wardrobe/"
DRAIN_LIMIT = 64 * 1024 * 1024
"""A refused upload is read (and dropped) up to this much, so the client sees the answer."""


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def listening_host(argv: list[str] | None = None) -> str | None:
    """The address this BentoML worker listens on (its socket arrives as `--fd N`); None if unknown."""
    argv = sys.argv if argv is None else argv
    try:
        fd = int(argv[argv.index("--fd") + 1])
        with socket.socket(fileno=os.dup(fd)) as listener:
            return str(listener.getsockname()[0])
    except (ValueError, IndexError, OSError):
        return None


def explain_at_start(token: str, host: str | None) -> None:
    """Log, once per worker at start-up, that the wardrobe is refused on this bind and why."""
    if not token and host is not None and not is_loopback(host):
        log.warning(
            "wardrobe: WARDROBE_TOKEN is not set and the server listens on %s, not a loopback "
            "address, so the wardrobe endpoints refuse every request (403); set WARDROBE_TOKEN "
            "to serve the wardrobe there, or listen on 127.0.0.1", host,
        )  # fmt: skip


class WardrobeAccess:
    """401 without the right bearer token; 403 without a token on a non-loopback bind."""

    def __init__(self, app: ASGIApp, *, token: str, host: str | None = None):
        self.app = app
        self.token = token.encode()
        self.host = host  # where the server listens; None: judge by each connection's local address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"] + "/").startswith(PREFIX):
            return await self.app(scope, receive, send)
        if self.token:
            scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token):
                return await self.app(scope, receive, send)
            what = "a wrong token" if scheme.lower() == "bearer" else "no bearer token"
            return await self._refuse(scope, receive, send, 401, f"the wardrobe needs the token: got {what}; "
                                      "send 'Authorization: Bearer <WARDROBE_TOKEN>'")  # fmt: skip
        host = self.host if self.host is not None else (scope.get("server") or (None,))[0]
        if is_loopback(host):
            return await self.app(scope, receive, send)
        return await self._refuse(
            scope, receive, send, 403,
            f"the wardrobe is off on this server: it listens on {host}, not a loopback address, and no "
            "WARDROBE_TOKEN is set; set WARDROBE_TOKEN to use the wardrobe here",
        )  # fmt: skip

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        limit = DRAIN_LIMIT
        while limit > 0:  # read what the client is still sending, so it can read our answer
            message_in = await receive()
            if message_in["type"] != "http.request":
                break
            limit -= len(message_in.get("body", b""))
            if not message_in.get("more_body", False):
                break
        headers = {"WWW-Authenticate": 'Bearer realm="wardrobe"'} if status == 401 else {}
        await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)
