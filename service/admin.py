"""Model administration over HTTP, under /admin, with its own credential (WARDROBE_ADMIN_TOKEN).

    GET  /admin/models                  the registry: every model, the champion, what each worker serves
    POST /admin/models                  publish: the body is the .onnx file (at most MAX_MODEL_BYTES)
    POST /admin/models/{sha}/promote    contract check + canary + guard, then champion or refused;
                                        {"force": true, "reason": "..."} (body or query) overrides the
                                        canary and the guard, recorded with who and why
    POST /admin/models/rollback         the previous champion comes back

Without WARDROBE_ADMIN_TOKEN every /admin path answers 403: administration is off.
A model only ever arrives as uploaded bytes or a registry SHA-256, never as a path
on the server; `POST /admin/reload` answers 410 saying so. Promotion and rollback
answer once every worker of this replica serves the new champion (or after
CONFIRM_BOUND_S), with the count of workers that confirmed, here and in all replicas.
"""

from __future__ import annotations

import asyncio
import hmac
import json

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contract.store.registry import RegistryError
from service import promotion
from service.promotion import MAX_MODEL_BYTES, PromotionRefused

CONFIRM_BOUND_S = 5.0
"""The longest a promotion waits for this replica's workers to confirm they serve the new model."""


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _refused(request: Request, token: str) -> JSONResponse | None:
    """None if the request carries the admin token; else the answer that refuses it."""
    if not token:
        return _error(403, f"{request.url.path}: model administration is off; set WARDROBE_ADMIN_TOKEN on the server")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    return JSONResponse({"error": f"{request.url.path} needs 'Authorization: Bearer <WARDROBE_ADMIN_TOKEN>'"},
                        status_code=401, headers={"WWW-Authenticate": 'Bearer realm="wardrobe-admin"'})  # fmt: skip


def _only(request: Request, allowed: str) -> JSONResponse | None:
    if request.method in allowed.split(", "):
        return None
    return JSONResponse({"error": f"{request.method} {request.url.path}: use {allowed}"}, status_code=405,
                        headers={"Allow": allowed})  # fmt: skip


async def _body(request: Request, limit: int, what: str = "the model") -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PromotionRefused(413, f"{what} is {int(declared):,} bytes, over the limit of {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PromotionRefused(413, f"{what} is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")
FORCE_EXAMPLE = '{"force": true, "reason": "why"}'


async def _force(request: Request) -> str | None:
    """The operator's reason for a forced promotion (None: not forced), from the query or a JSON body;
    PromotionRefused(400) naming what is wrong."""
    given: dict = dict(request.query_params)
    data = await _body(request, 16 * 1024, "the promotion's body")
    if data.strip():
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            raise PromotionRefused(400, f"{request.url.path}: the body must be a JSON object such as {FORCE_EXAMPLE}")
        given |= body
    if unknown := sorted(set(given) - {"force", "reason"}):
        raise PromotionRefused(400, f"{request.url.path}: unknown field {', '.join(map(repr, unknown))[:200]}; "
                               f"it takes {FORCE_EXAMPLE} or nothing")  # fmt: skip
    force, reason = given.get("force", False), given.get("reason")
    if isinstance(force, str) and force.lower() in _TRUE + _FALSE:
        force = force.lower() in _TRUE
    if not isinstance(force, bool):
        raise PromotionRefused(400, f"{request.url.path}: 'force' must be true or false, got {str(force)[:50]!r}")
    if reason is not None and not isinstance(reason, str):
        raise PromotionRefused(400, f"{request.url.path}: 'reason' must be a string")
    if not force:
        if reason is not None:
            raise PromotionRefused(400, f"{request.url.path}: 'reason' goes with 'force': {FORCE_EXAMPLE}")
        return None
    if not (reason or "").strip():
        raise PromotionRefused(400, f"{request.url.path}: 'force' needs a 'reason' (recorded with who forced it): "
                               f"{FORCE_EXAMPLE}")  # fmt: skip
    return reason


class AdminEndpoints:
    """The handlers; the registry, this worker's model switch and its follower come from `app.state`."""

    def __init__(self, token: str, workers: int):
        self.token = token
        self.workers = workers
        self._deciding = asyncio.Lock()  # one promotion or rollback at a time in this worker

    def _who(self, request: Request) -> str:
        return f"admin over HTTP from {request.client.host if request.client else 'unknown'}"

    async def _after_change(self, request: Request, sha: str) -> dict:
        follower = request.app.state.follower
        await follower.follow()  # this worker at once; the others by notification or poll
        return await follower.wait_for_replica(sha, self.workers, CONFIRM_BOUND_S)

    async def models(self, request: Request) -> Response:
        if refused := _refused(request, self.token) or _only(request, "GET, HEAD, POST"):
            return refused
        registry = request.app.state.registry
        if request.method == "POST":
            try:
                data = await _body(request, MAX_MODEL_BYTES)
                record, new = await anyio.to_thread.run_sync(promotion.publish, registry, data, self._who(request))
            except PromotionRefused as exc:
                return _error(exc.status, exc.message)
            return JSONResponse({"model": record.as_json(), "new": new}, status_code=201 if new else 200)
        records = await anyio.to_thread.run_sync(registry.records)
        workers = await anyio.to_thread.run_sync(registry.confirmations)
        champion = next((r.sha256 for r in records if r.state == "champion"), None)
        return JSONResponse({
            "champion": champion, "models": [r.as_json() for r in records],
            "workers": [{"worker": w.worker, "replica": w.replica, "model_sha256": w.model_sha256,
                         "confirmed_at": w.confirmed_at.isoformat()} for w in workers],
        })  # fmt: skip

    async def promote(self, request: Request) -> Response:
        if refused := _refused(request, self.token) or _only(request, "POST"):
            return refused
        registry, models = request.app.state.registry, request.app.state.models
        served = models.current

        try:
            force = await _force(request)
        except PromotionRefused as exc:
            return _error(exc.status, exc.message)
        try:
            sha = await anyio.to_thread.run_sync(registry.resolve, request.path_params["sha"])
        except RegistryError as exc:
            return _error(404, str(exc))

        def decide():
            loaded = lambda sha: served.classifier if sha == served.sha256 else None  # noqa: E731
            return promotion.promote(registry, sha, self._who(request), loaded, force=force)

        async with self._deciding:
            try:
                record, canary = await anyio.to_thread.run_sync(decide)
            except PromotionRefused as exc:
                return _error(exc.status, exc.message, canary=exc.canary.as_dict() if exc.canary else None)
            except RegistryError as exc:  # the champion already, or it changed while the canary ran
                return _error(409, str(exc))
            confirmed = await self._after_change(request, record.sha256)
        return JSONResponse({"model": record.as_json(), "canary": record.canary or canary.as_dict(),
                             "confirmed": confirmed})  # fmt: skip

    async def rollback(self, request: Request) -> Response:
        if refused := _refused(request, self.token) or _only(request, "POST"):
            return refused
        registry = request.app.state.registry
        async with self._deciding:
            try:
                back, old = await anyio.to_thread.run_sync(promotion.rollback, registry, self._who(request))
            except RegistryError as exc:
                return _error(409, str(exc))
            confirmed = await self._after_change(request, back.sha256)
        return JSONResponse({"model": back.as_json(), "rolled_back": old.as_json(), "confirmed": confirmed})

    async def reload(self, request: Request) -> Response:
        if refused := _refused(request, self.token) or _only(request, "POST"):
            return refused
        return _error(410, "POST /admin/reload is gone: models never come from a server path. Publish the file "
                      "(POST /admin/models with the .onnx as the body, or `wardrobe models publish FILE`), then "
                      "promote its SHA-256 (POST /admin/models/<sha256>/promote)")  # fmt: skip

    async def not_found(self, request: Request) -> Response:
        if refused := _refused(request, self.token):
            return refused
        return _error(404, f"no such admin endpoint: {request.method} {request.url.path} (see docs/wardrobe.md)")


def admin_app(token: str, workers: int) -> Starlette:
    """The admin endpoints, to mount at /admin; the service puts `registry`, `models` and `follower` in
    `app.state` when its worker starts."""
    admin = AdminEndpoints(token, workers)
    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[
        Route("/models", admin.models, methods=every),
        Route("/models/rollback", admin.rollback, methods=every),
        Route("/models/{sha}/promote", admin.promote, methods=every),
        Route("/reload", admin.reload, methods=every),
        Route("/{rest:path}", admin.not_found, methods=every),
    ])  # fmt: skip
