"""The wardrobe over HTTP: the page at /, the API explorer at /docs, and /wardrobe/* endpoints.

A Starlette app mounted into the BentoML service (service/service.py). Uploads to
POST /wardrobe/items are read as /classify's are
(service/uploads.read_upload: limits, decoding, thumbnails, 4xx naming the file), are
classified through the service's batcher, and stored in one transaction
(contract/store). Access rules (service/access.py) are applied in front of the
endpoints; what a request asks for is read and checked in service/wardrobe_requests.py.
The endpoints are described in docs/wardrobe.md.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
import numpy as np
from PIL import Image, ImageOps
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from contract.store import UNSURE, Item, ItemNotFound, NewItem, Store, database_url
from contract.store.database import describe
from contract.store.export import png_bytes, write_export
from service.admission import Busy
from service.learning import learning_commands, learning_summary
from service.model_download import model_download
from service.model_history import model_history
from service.model_standing import standing
from service.model_switch import Served
from service.settings import Settings
from service.uploads import UploadError, read_upload
from service.wardrobe_requests import ClientError, listing_query, patch_label, path_item_id, query_ids

log = logging.getLogger("bentoml.wardrobe")

STATIC = Path(__file__).with_name("static")
ITEMS = "/wardrobe/items"
THUMBNAIL_SIZE = 256
THUMBNAIL_TYPE = "image/webp"
IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}
"""An item's id is never reused, so its thumbnail and its model input never change."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def make_thumbnail(image: Image.Image, crop: np.ndarray) -> bytes:
    """A WebP of a decoded upload, at most THUMBNAIL_SIZE px on its long side, upright, alpha on white;
    the model's input `crop` instead if that fails. Made by read_upload in the same decode
    (service/uploads.py): the image is already reduced to a few hundred pixels."""
    try:
        upright = ImageOps.exif_transpose(image)
        if upright.mode in ("RGBA", "LA", "P", "PA") or "transparency" in upright.info:
            rgba = upright.convert("RGBA")
            upright = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        small = upright.convert("RGB")
        small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        small.save(out, "WEBP", quality=80, method=0)  # the fastest encoder setting: a little larger files
    except Exception:  # the image decoded already; if a thumbnail still fails, show the crop
        log.warning("wardrobe: no thumbnail for an upload; showing the model input instead", exc_info=True)
        out = io.BytesIO()
        Image.fromarray(crop).save(out, "WEBP", lossless=True)
    return out.getvalue()


def item_json(item: Item) -> dict[str, Any]:
    """An item as the API answers it."""
    return {
        "id": item.id, "added_at": item.added_at.isoformat(), "filename": item.filename, "label": item.label,
        "label_source": item.label_source, "shelf": item.shelf, "predicted_label": item.predicted_label,
        "confidence": item.confidence, "top_k": item.top_k, "unsure": item.unsure, "model_sha256": item.model_sha256,
        "corrected_label": item.corrected_label,
        "corrected_at": item.corrected_at.isoformat() if item.corrected_at else None,
        "thumbnail": f"{ITEMS}/{item.id}/thumbnail",
    }  # fmt: skip


class WardrobeEndpoints:
    """The handlers; the store opens on first use in each worker (and migrates then)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = database_url(settings.db)
        self._store: Store | None = None
        self._opening = asyncio.Lock()

    async def store(self) -> Store:
        if self._store is None:
            async with self._opening:
                if self._store is None:
                    self._store = await anyio.to_thread.run_sync(Store.open, self.url)
                    log.info("wardrobe: items are stored in %s", describe(self.url))
        return self._store

    async def _run(self, function, *args):
        store = await self.store()
        return await anyio.to_thread.run_sync(lambda: function(store, *args))

    # -- endpoints ---------------------------------------------------------

    async def items(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._add(request)
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed(request, "GET, POST")
        classes = _served(request).classes
        try:
            shelf, corrected, limit, before = listing_query(request, classes)
        except ClientError as exc:
            return _error(exc.status, exc.message)
        page = await self._run(lambda s: s.page(shelf=shelf, corrected=corrected, limit=limit, before=before))
        following = None
        if page.next_before is not None:
            following = f"{ITEMS}?{urlencode(dict(request.query_params) | {'before': page.next_before})}"
        return JSONResponse({"items": [item_json(i) for i in page.items], "next": following})

    async def _add(self, request: Request) -> Response:
        state = request.app.state  # the worker's upload limits and in-flight bound, shared with /classify
        try:
            upload = await read_upload(request, state.upload_limits, thumbnail=make_thumbnail)
            with state.in_flight.admit():
                store = await self.store()  # before classifying: a database that cannot open fails fast
                served = _served(request)  # taken after the last wait before submitting: it cannot retire between
                probabilities = await served.submit(upload.images)
        except (UploadError, Busy) as refusal:
            return refusal.response()
        answers = served.classifier.answers(probabilities, self.settings.top_k)  # as /classify answers
        crops = np.rint(upload.images[:, 0] * 255).astype(np.uint8)  # exactly the uint8 crops (x / 255)
        new = [
            NewItem(filename=name, thumbnail=thumb, thumbnail_type=THUMBNAIL_TYPE, model_input=crop,
                    predicted_label=a["label"], confidence=a["confidence"], top_k=a["top_k"],
                    unsure=a["unsure"], model_sha256=served.classifier.info.sha256)
            for (name, thumb), crop, a in zip(upload.thumbnails, crops, answers, strict=True)
        ]  # fmt: skip
        added = await anyio.to_thread.run_sync(store.add, new)
        return JSONResponse([item_json(i) for i in added], status_code=201)

    async def item(self, request: Request) -> Response:
        try:
            item_id = path_item_id(request)
            if request.method in ("GET", "HEAD"):
                return JSONResponse(item_json(await self._run(Store.get, item_id)))
            if request.method == "PATCH":
                label = await patch_label(request, _served(request).classes)
                return JSONResponse(item_json(await self._run(Store.correct, item_id, label)))
            if request.method == "DELETE":
                await self._run(Store.delete, item_id)
                return Response(status_code=204)
            return _method_not_allowed(request, "GET, PATCH, DELETE")
        except ClientError as exc:
            return _error(exc.status, exc.message)
        except ItemNotFound as exc:
            return _error(404, str(exc))

    async def thumbnail(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed(request, "GET")
        try:
            data, media_type = await self._run(Store.thumbnail, path_item_id(request))
        except ClientError as exc:
            return _error(exc.status, exc.message)
        except ItemNotFound as exc:
            return _error(404, str(exc))
        return Response(data, media_type=media_type, headers=IMMUTABLE)

    async def model_input(self, request: Request) -> Response:
        """The 28×28 image the model classified, as an 8-bit grey PNG: what the page shows beside a thumbnail."""
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed(request, "GET")
        try:
            image = await self._run(Store.model_input, path_item_id(request))
        except ClientError as exc:
            return _error(exc.status, exc.message)
        except ItemNotFound as exc:
            return _error(404, str(exc))
        return Response(png_bytes(image), media_type="image/png", headers=IMMUTABLE)

    async def thumbnails(self, request: Request) -> Response:
        """Many thumbnails in one answer, as data: URLs: the page asks for every one in view at once."""
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed(request, "GET")
        try:
            ids = query_ids(request)
        except ClientError as exc:
            return _error(exc.status, exc.message)
        found = await self._run(Store.thumbnails, ids)
        urls = {str(i): f"data:{kind};base64,{base64.b64encode(data).decode()}" for i, (data, kind) in found.items()}
        return JSONResponse({"thumbnails": urls, "missing": [i for i in ids if i not in found]})

    async def shelves(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed(request, "GET")
        info = _served(request).classifier.info
        classes = info.classes
        counts, corrected = await self._run(lambda s: (s.counts(), s.corrected_count()))
        shelves = [{"name": UNSURE, "title": "Not sure", "count": counts.get(UNSURE, 0)}]
        shelves += [{"name": c, "title": c, "count": counts.get(c, 0)} for c in classes]
        others = sorted(set(counts) - {UNSURE, *classes})  # labels of an earlier model with other classes
        shelves += [{"name": c, "title": c, "count": counts[c]} for c in others]
        return JSONResponse({
            "classes": list(classes), "shelves": shelves, "total": sum(counts.values()), "corrected": corrected,
            "model": {"sha256": info.sha256, "unsure_threshold": info.unsure_threshold},
            "limits": {"max_files": self.settings.max_files, "max_file_bytes": self.settings.max_file_bytes,
                       "max_request_bytes": self.settings.max_request_bytes},
        })  # fmt: skip

    async def export(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed(request, "GET")
        classes = _served(request).classes
        spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - closed after streaming
        await self._run(lambda s: write_export(s.labelled_images(), classes, spool))
        spool.seek(0)

        def chunks():
            with spool:
                while chunk := spool.read(256 * 1024):
                    yield chunk

        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        disposition = f'attachment; filename="wardrobe-export-{stamp}.zip"'
        return StreamingResponse(chunks(), media_type="application/zip",
                                 headers={"Content-Disposition": disposition})  # fmt: skip

    async def learning(self, request: Request) -> Response:
        """Corrections waiting for a fine-tune, its commands, an audit sample (service/learning.py)."""
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed(request, "GET")
        info = _served(request).classifier.info
        summary, audit = await self._run(lambda s: learning_summary(s, info.metadata))
        commands = learning_commands(describe(self.url))
        figures = standing(_served(request).classifier, request.app.state.shipped)  # service/model_standing.py
        return JSONResponse(summary | figures | {"model_sha256": info.sha256, "audit": [item_json(i) for i in audit],
                                                 "commands": commands})  # fmt: skip


def _served(request: Request) -> Served:
    """The model this worker serves now (its Wardrobe put the ModelSwitch in app.state): a request keeps
    the one it took."""
    return request.app.state.models.current


def _method_not_allowed(request: Request, allowed: str) -> JSONResponse:
    return JSONResponse({"error": f"{request.method} {request.url.path}: use {allowed}"},
                        status_code=405, headers={"Allow": allowed})  # fmt: skip


def _not_found(request: Request) -> Response:
    return _error(404, f"no such wardrobe endpoint: {request.url.path} (see /docs)")


def _page(request: Request) -> Response:
    # Its Content-Security-Policy comes from service/headers.py, as for every page and static file.
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def _docs(request: Request) -> Response:
    return FileResponse(STATIC / "docs.html", headers={"Cache-Control": "no-cache"})


def wardrobe_app(settings: Settings) -> Starlette:
    """The page, the explorer and the wardrobe endpoints, to mount at / in the BentoML service."""
    endpoints = WardrobeEndpoints(settings)
    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]  # each handler answers 405 in JSON itself
    routes = [
        Route("/", _page, methods=["GET", "HEAD"]),
        Route("/docs", _docs, methods=["GET", "HEAD"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route(ITEMS, endpoints.items, methods=every),
        Route(ITEMS + "/{item_id}", endpoints.item, methods=every),
        Route(ITEMS + "/{item_id}/thumbnail", endpoints.thumbnail, methods=every),
        Route(ITEMS + "/{item_id}/input.png", endpoints.model_input, methods=every),
        Route("/wardrobe/thumbnails", endpoints.thumbnails, methods=every),
        Route("/wardrobe/shelves", endpoints.shelves, methods=every),
        Route("/wardrobe/export", endpoints.export, methods=every),
        # Corrections waiting for a fine-tune, its commands, an audit sample (service/learning.py).
        Route("/wardrobe/learning", endpoints.learning, methods=every),
        # The registry's history for the page's "Teach the model" panel (service/model_history.py).
        Route("/wardrobe/models", model_history, methods=every),
        # A registry model's ONNX file, for the Teach panel's download (service/model_download.py).
        Route("/wardrobe/models/{ref}.onnx", model_download, methods=every),
        Route("/wardrobe/{rest:path}", _not_found, methods=every),
    ]
    return Starlette(routes=routes)
