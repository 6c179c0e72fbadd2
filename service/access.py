"""Who may use the wardrobe: a bearer token, or, without one, only a server on a loopback address.

ASGI middleware in front of the wardrobe's endpoints (service/wardrobe.py). With
WARDROBE_TOKEN set, every request under /wardrobe/ must carry
`Authorization: Bearer <token>` (compared in constant time) or gets 401. Without
a token the wardrobe is a single person's on their own machine: it answers only
when the server listens on a loopback address (127.0.0.1, ::1), and refuses with
403 and a message saying what to set on any other bind; the worker logs why when
it starts. The page itself, /classify and the health endpoints stay open.

`RequestGuard`, in front of every endpoint, keeps other web sites out of a
server on this machine. A page elsewhere can make a browser send requests here:
by DNS rebinding (evil.example resolves to 127.0.0.1, so its scripts read our
answers as same-origin) or by a cross-site form POST. So in loopback mode (no
token) only `Host` values naming this machine are answered (localhost and
loopback addresses, with any port, plus WARDROBE_ALLOWED_HOSTS), as Jupyter
Server does; and a state-changing request (POST, PUT, PATCH, DELETE) whose
`Origin` is not this server's own is refused in every mode, as Ollama does since
CVE-2024-28224. Both answer 403 naming the header.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import socket
import sys
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.lingering import body_may_follow

log = logging.getLogger("bentoml.wardrobe")  # under "bentoml": its log handlers apply

PREFIX = "/wardrobe/"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}


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
            return await refuse(scope, receive, send, 401, f"the wardrobe needs the token: got {what}; "
                                "send 'Authorization: Bearer <WARDROBE_TOKEN>'")  # fmt: skip
        host = self.host if self.host is not None else (scope.get("server") or (None,))[0]
        if is_loopback(host):
            return await self.app(scope, receive, send)
        return await refuse(
            scope, receive, send, 403,
            f"the wardrobe is off on this server: it listens on {host}, not a loopback address, and no "
            "WARDROBE_TOKEN is set; set WARDROBE_TOKEN to use the wardrobe here",
        )  # fmt: skip


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    """Answer `{"error": message}` before the endpoint runs, whose body is not read: the connection
    then closes, reading what the client still sends first, so that it reads this (service/lingering.py)."""
    headers = {"WWW-Authenticate": 'Bearer realm="wardrobe"'} if status == 401 else {}
    if body_may_follow(scope):
        headers["Connection"] = "close"
    await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)


def split_host(value: str) -> tuple[str, int | None]:
    """A `Host` value (or an URL's netloc) as (lower-case name, port or None); ("", None) if malformed."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:3000
        name, bracket, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""
        if ":" in value:  # an unbracketed IPv6 address is not a valid Host
            return "", None
    if port and not (port.isascii() and port.isdigit() and int(port) < 65536):
        return "", None
    return name.rstrip("."), int(port) if port else None


def names_this_machine(host: str, allowed: frozenset[str] = frozenset()) -> bool:
    """True if a `Host` value is localhost, a loopback address or one of `allowed` (any port):
    a name DNS rebinding cannot take over, as an attacker's own domain can."""
    name, _ = split_host(host)
    if not name:
        return False
    if name == "localhost" or name in allowed:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def same_origin(origin: str, host: str) -> bool:
    """True if a browser's `Origin` names the server the request was sent to (its `Host`)."""
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:  # a port that is not a number, an unbalanced bracket
        return False
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path or parts.query:
        return False  # "null" (sandboxed frames, file: pages) and anything not an origin
    default = DEFAULT_PORTS[parts.scheme]
    name, port = split_host(host)
    return bool(name) and (parts.hostname.rstrip("."), origin_port or default) == (name, port or default)


class RequestGuard:
    """403 for a `Host` not naming this machine (loopback mode only) and for a cross-site `Origin`
    on a state-changing request (every mode)."""

    def __init__(self, app: ASGIApp, *, token: str, host: str | None = None,
                 allowed_hosts: frozenset[str] = frozenset()):  # fmt: skip
        self.app = app
        self.token = token
        self.host = host  # where the server listens; None: judge by each connection's local address
        self.allowed_hosts = frozenset(h.lower().rstrip(".") for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        listening = self.host if self.host is not None else (scope.get("server") or (None,))[0]
        if not self.token and is_loopback(listening) and not names_this_machine(host, self.allowed_hosts):
            return await refuse(
                scope, receive, send, 403,
                f"Host {host[:100]!r} does not name this machine: without WARDROBE_TOKEN this server answers "
                "only requests to localhost or a loopback address (add names in WARDROBE_ALLOWED_HOSTS)",
            )  # fmt: skip
        origin = headers.get("origin")
        if scope["method"] in STATE_CHANGING and origin is not None and not same_origin(origin, host):
            return await refuse(
                scope, receive, send, 403,
                f"{scope['method']} from another site refused: Origin {origin[:100]!r} is not this server "
                f"({host[:100]!r}); send the request from this server's own page, or with no Origin header",
            )  # fmt: skip
        await self.app(scope, receive, send)
