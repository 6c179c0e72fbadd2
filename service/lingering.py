"""Lingering close: a connection that ends while the client may still be sending is drained, then closed.

When a server closes a TCP socket that still holds unread bytes, or that receives
bytes after the close, the kernel answers with a reset; a client still writing its
upload then fails with ECONNRESET or EPIPE and never reads the answer we sent
(a 413 for a body over the limit, a 400 for a bad part, a 503 or 408, or uvicorn's
own 400 for broken framing such as a Content-Length shorter than the body).
nginx's `lingering_close` is the remedy followed here: after the answer, shut
down our sending side (the client sees the whole answer and then end of file),
keep reading and dropping whatever the client still sends, and close once it
closes, stops sending for `idle_s` (nginx's `lingering_timeout`), or after
`total_s` (`lingering_time`) or `max_bytes` in all. The connection is then
quiet, and the close sends no reset.

uvicorn, as BentoML 1.4 runs it, closes at once and takes no protocol option
from BentoML, so `install_lingering_close()` replaces the HTTP protocol class uvicorn picks for
`http="auto"` with a subclass whose transport lingers on close. The ASGI side
only has to mark an answer sent before the body has all arrived `Connection: close`,
so that the connection carries no further request and its close lingers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Scope


@dataclass(frozen=True)
class Linger:
    """How long and how much a closing connection keeps reading (nginx's defaults for the times)."""

    idle_s: float = 5.0
    """Close when the client sends nothing for this long (nginx `lingering_timeout`)."""
    total_s: float = 30.0
    """Close after this long whatever the client does (nginx `lingering_time`)."""
    max_bytes: int = 256 * 1024 * 1024
    """Close after dropping this much: a client still sending then gets the reset it asked for."""


def body_may_follow(scope: Scope) -> bool:
    """Whether the request announces a body, which may still be on its way (a bad length counts)."""
    headers = Headers(scope=scope)
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


class _Drain(asyncio.Protocol):
    """Takes over a closing connection: drops what arrives, closes it when the `Linger` says so."""

    def __init__(self, transport: asyncio.Transport, owner: asyncio.BaseProtocol, linger: Linger):
        self.transport = transport
        self.owner = owner  # the HTTP protocol, told when the connection is finally gone
        self.linger = linger
        self.dropped = 0
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(linger.total_s, transport.close)
        self.idle = loop.call_later(linger.idle_s, transport.close)

    def data_received(self, data: bytes) -> None:
        self.dropped += len(data)
        if self.dropped > self.linger.max_bytes:
            self.transport.close()
            return
        self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(self.linger.idle_s, self.transport.close)

    def eof_received(self) -> bool:
        return False  # the client is done sending too: the transport closes, quietly

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline.cancel()
        self.idle.cancel()
        self.owner.connection_lost(exc)


class _LingeringTransport:
    """The transport as the HTTP protocol sees it: all calls pass through, except that `close()`
    hands the connection to a `_Drain` after shutting down the sending side."""

    def __init__(self, transport: asyncio.Transport, owner: asyncio.BaseProtocol, linger: Linger):
        self._transport = transport
        self._owner = owner
        self._linger = linger
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if self.is_closing():
            return
        self._closing = True
        if not self._transport.can_write_eof():
            self._transport.close()
            return
        self._transport.set_protocol(_Drain(self._transport, self._owner, self._linger))
        self._transport.write_eof()  # sent once the answer is flushed: the client reads it, then EOF
        if not self._transport.is_reading():  # uvicorn pauses reading while a body waits for the app
            self._transport.resume_reading()


def lingering_protocol(base: type[asyncio.Protocol], linger: Linger) -> type[asyncio.Protocol]:
    """A subclass of the HTTP protocol `base` whose connections close by lingering."""

    class LingeringProtocol(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(_LingeringTransport(transport, self, linger))  # type: ignore[arg-type]

    LingeringProtocol.__name__ = LingeringProtocol.__qualname__ = f"Lingering{base.__name__}"
    return LingeringProtocol


def install_lingering_close(linger: Linger = Linger()) -> None:
    """Make the HTTP protocol uvicorn picks by default (`http="auto"`, BentoML's) linger on close."""
    import uvicorn.protocols.http.auto as auto

    if not getattr(auto.AutoHTTPProtocol, "lingers", False):
        auto.AutoHTTPProtocol = lingering_protocol(auto.AutoHTTPProtocol, linger)
        auto.AutoHTTPProtocol.lingers = True
