"""Admission: how many requests a worker takes in at once, how slowly a body may arrive, and every 503.

Every overload answer of the service is a `Busy`: 503, `Retry-After`, and
`{"error": "server busy: <what is full>; retry in 1 s"}`. Three things raise it:
`ConnectionCap` (requests in progress, before a byte of the body is read),
`InFlight` (checked uploads waiting for or in a model call, across /classify and
/wardrobe/items), and the decode budget (service/decode_budget.py, `DecodeBusy`).

Two ASGI middlewares sit in front of every route, because uvicorn as
BentoML 1.4 runs it has neither limit: BentoML's worker hands uvicorn only
`backlog`, `timeout_keep_alive` (5 s, idle connections between requests) and
`timeout_graceful_shutdown`, and its `traffic.max_concurrency` answers 429
without `Retry-After`. Without them, a client that sends its headers and the
first bytes of an upload and then stalls (a "slowloris") holds a worker's slot
until the 30 s request timeout, and a thousand such clients lock everyone out.

- `ConnectionCap`: at most `limit` requests in progress per worker, uploads
  still arriving included. Above it: 503 with `Retry-After`, answered before a
  byte of the body is read, and the connection closed.
- `BodyDeadline`: a body must keep arriving. No gap longer than `idle_s`
  between chunks, and after the first `idle_s` at least `min_rate` bytes/s on
  average (as Apache's mod_reqtimeout: every `min_rate` bytes received buy one
  more second). Otherwise the request is cancelled wherever it is and answered
  408 with the connection closed, which frees its slot and its socket.

What ASGI cannot see: a client that never finishes its request headers. uvicorn
has no header timeout and holds such a connection until the client goes; the
ingress in front must time it out (docs/security.md, "What the ingress must still do").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
import anyio.lowlevel
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

RETRY_AFTER_S = 1


class Busy(Exception):
    """The worker is full: answered 503 with Retry-After. `what` says what is full."""

    def __init__(self, what: str, retry_after_s: int = RETRY_AFTER_S):
        super().__init__(what)
        self.what = what
        self.retry_after_s = retry_after_s

    def response(self, close: bool = False) -> JSONResponse:
        """The one overload answer; `close` when the request's body was not read."""
        headers = {"Retry-After": str(self.retry_after_s), **({"Connection": "close"} if close else {})}
        return JSONResponse({"error": f"server busy: {self.what}; retry in {self.retry_after_s} s"},
                            status_code=503, headers=headers)  # fmt: skip


class InFlight:
    """At most `limit` checked uploads per worker waiting for or in a model call (WARDROBE_QUEUE_BOUND).

    Only checked requests count, so uploads still arriving (slow clients included; BodyDeadline
    times them out) cannot crowd out the model's queue."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one place for the block; Busy when all are taken."""
        if self.count >= self.limit:
            raise Busy(f"{self.count} requests waiting for the model on this worker")
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


EXEMPT_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
"""Probes and metrics are never refused: an overloaded worker is still alive and observable."""


class ConnectionCap:
    """Answer 503 + Retry-After, before reading the body, once `limit` requests are in progress."""

    def __init__(self, app: ASGIApp, *, limit: int, retry_after_s: int = RETRY_AFTER_S):
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            return await self.app(scope, receive, send)
        if self.in_progress >= self.limit:
            busy = Busy(f"{self.in_progress} requests in progress on this worker", self.retry_after_s)
            # Close: the unread body must not be parsed as the next request on this connection.
            return await busy.response(close=True)(scope, receive, send)
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1


class BodyDeadline:
    """Cancel a request whose body stalls for `idle_s` or falls below `min_rate` bytes/s; answer 408."""

    def __init__(self, app: ASGIApp, *, idle_s: float, min_rate: int):
        self.app = app
        self.idle_s = idle_s
        self.min_rate = min_rate

    def _wait_s(self, start: float, received: int, now: float) -> float:
        """How long the next chunk may take: the idle limit, or less if the average rate runs out first."""
        if not self.min_rate:
            return self.idle_s
        return min(self.idle_s, start + self.idle_s + received / self.min_rate - now)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = anyio.current_time()
        received = 0
        body_done = False
        expired = False
        response_started = False

        async def paced_receive() -> Message:
            nonlocal received, body_done, expired
            if body_done:  # later calls only listen for a disconnect: no deadline
                return await receive()
            with anyio.move_on_after(max(0.0, self._wait_s(start, received, anyio.current_time()))):
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    body_done = not message.get("more_body", False)
                else:
                    body_done = True
                return message
            expired = True
            request.cancel()
            await anyio.lowlevel.checkpoint()  # the cancellation is delivered here
            raise AssertionError("unreachable: the request's scope was cancelled")

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        with anyio.CancelScope() as request:
            await self.app(scope, paced_receive, tracked_send)
        if expired and not response_started:
            elapsed = anyio.current_time() - start
            rate = f", {self.min_rate:,} bytes/s on average after the first {self.idle_s:g} s" if self.min_rate else ""
            response = JSONResponse(
                {"error": f"request body too slow: {received:,} bytes in {elapsed:.1f} s "
                          f"(wanted: no pause over {self.idle_s:g} s{rate})"},
                status_code=408,
                headers={"Connection": "close"},
            )  # fmt: skip
            await response(scope, receive, send)
