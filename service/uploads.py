"""The upload gate: ASGI middleware that turns a POST /classify (or /wardrobe/items) body into model input.

BentoML 1.4 has no request-size limit, downloads any URL a client puts in a
file field, and answers a binary part in an undeclared field with a 500. So the
multipart body of /classify never reaches BentoML's decoder: this middleware
reads it under our limits (per request and per file while streaming, file count),
decodes and checks every image (pixel limit, format, truncation), and either
answers the client's mistake itself with a 4xx `{"error": ...}` naming the file,
or hands the endpoint the ready float32 [N, 1, 28, 28] batch in the ASGI scope,
with an empty JSON body in place of the upload. Every request's images are thus
valid before they can join a shared batch.

One gate per worker serves every upload path, so WARDROBE_QUEUE_BOUND bounds
the worker's checked requests on all of them together, and one decode budget
(service/decode_budget.py) bounds what their large decodes cost.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image
from starlette.datastructures import Headers
from starlette.formparsers import FormParser, MultiPartException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contract.preprocess import ImageError, decode_image, header_pixels, to_fashion_mnist, to_model_input
from service.decode_budget import INLINE_DECODE_BYTES, INLINE_DECODE_PIXELS, DecodeBudget, DecodeBusy
from service.multipart import MultipartError, Part, PartTooLarge, TooManyParts, read_parts

log = logging.getLogger(__name__)

FIELD = "images"
SCOPE_KEY = "wardrobe.images"
"""Where the checked batch travels from the gate to the endpoint."""


class UploadError(Exception):
    """A client mistake in the upload: answered with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


Thumbnailer = Callable[[Image.Image, np.ndarray], bytes]
"""(decoded image, its uint8 28×28 crop) -> thumbnail bytes, made in the same decode."""


@dataclass(frozen=True)
class UploadPath:
    """How the gate treats one path."""

    thumbnail: Thumbnailer | None = None
    """Made from each decoded image (the wardrobe's thumbnails), so no file is decoded twice."""
    uploads_only: bool = True
    """Answer other methods 405; False: they pass through (GET /wardrobe/items lists items)."""


@dataclass(frozen=True)
class Upload:
    """A request's checked images: the names the client gave and the model input, in order."""

    names: list[str]
    images: np.ndarray  # float32 [N, 1, 28, 28]
    thumbnails: tuple[tuple[str, bytes], ...] = ()
    """(filename, thumbnail) of each upload, in order, on a path that makes thumbnails."""


class BodyTooLarge(Exception):
    pass


class UploadGate:
    """Parse, limit and decode `POST <path>` uploads; pass everything else through untouched."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Mapping[str, UploadPath],
        max_files: int,
        max_file_bytes: int,
        max_request_bytes: int,
        max_pixels: int,
        max_in_flight: int,
        decodes: DecodeBudget,
    ):
        self.app = app
        self.paths = dict(paths)
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # checked requests on every path, waiting for or in a batch, or being answered
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.max_request_bytes = max_request_bytes
        self.max_pixels = max_pixels
        self.decodes = decodes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = self.paths.get(scope["path"]) if scope["type"] == "http" else None
        if path is None or (scope["method"] != "POST" and not path.uploads_only):
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            response = JSONResponse(
                {"error": f"{scope['method']} {scope['path']}: use POST with files in field '{FIELD}'"},
                status_code=405,
                headers={"Allow": "POST"},
            )
            return await response(scope, receive, send)
        await self._gate(scope, receive, send, path)

    async def _gate(self, scope: Scope, receive: Receive, send: Send, path: UploadPath) -> None:
        received = 0
        more_body = True

        async def body() -> AsyncIterator[bytes]:
            nonlocal received, more_body
            while more_body:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                more_body = message.get("more_body", False)
                received += len(chunk)
                if received > self.max_request_bytes:
                    raise BodyTooLarge()
                if chunk:
                    yield chunk

        try:
            upload = await self._read(Headers(scope=scope), body(), path)
        except ClientDisconnect:
            return  # nobody is left to answer
        except UploadError as exc:
            # Answered at once, even while the body is still arriving; the connection then closes,
            # reading what the client still sends first, so that it reads this (service/lingering.py).
            headers = {**(exc.headers or {}), **({"Connection": "close"} if more_body else {})}
            response = JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
            return await response(scope, receive, send)

        if self.in_flight >= self.max_in_flight:
            # Overload: only checked requests count, so uploads still arriving (slow clients
            # included; service/admission.py times them out) cannot crowd out the model's queue.
            response = JSONResponse(
                {"error": f"server overloaded ({self.in_flight} requests waiting for the model); retry shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
            return await response(scope, receive, send)
        scope = dict(scope)
        scope[SCOPE_KEY] = upload
        self.in_flight += 1
        try:
            await forward_with_empty_json(self.app, scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _read(self, headers: Headers, body: AsyncIterator[bytes], path: UploadPath) -> Upload:
        content_type = headers.get("content-type", "")
        # A form of text fields only (BentoML's clients send a URL given for `images` that way)
        # is read too, so that its text values get the 400 below rather than a 415.
        text_form = content_type.lower().startswith("application/x-www-form-urlencoded")
        if not (text_form or content_type.lower().startswith("multipart/form-data")):
            raise UploadError(
                415,
                f"expected a multipart/form-data upload with files in field '{FIELD}', "
                f"got content type {content_type or 'none'!r}",
            )
        declared = headers.get("content-length")
        if declared and declared.isascii() and declared.isdigit() and int(declared) > self.max_request_bytes:
            raise UploadError(413, self._too_large(int(declared)))
        try:
            if text_form:
                form = await FormParser(headers, body, max_fields=self.max_files).parse()
                parts = [Part(name, None, value.encode()) for name, value in form.multi_items()]
            else:
                parts = await read_parts(content_type, body, max_parts=self.max_files,
                                         max_part_bytes=self.max_file_bytes)  # fmt: skip
        except BodyTooLarge:
            raise UploadError(413, self._too_large(None)) from None
        except TooManyParts:
            raise UploadError(413, f"too many files: at most {self.max_files} per request") from None
        except PartTooLarge as exc:
            name = f"'{exc.part.filename}'" if exc.part.filename else "a file"
            raise UploadError(413, f"file {name} is over the limit of {self.max_file_bytes:,} bytes per file") from None
        except (MultipartError, MultiPartException) as exc:
            raise UploadError(400, f"malformed multipart body: {exc}") from None
        values = [part for part in parts if part.name == FIELD]
        if not values:
            others = ", ".join(repr(k) for k in dict.fromkeys(part.name for part in parts))
            got = f"got fields {others}" if others else "the form is empty"
            raise UploadError(400, f"no files in field '{FIELD}' ({got})")
        names, filenames, blobs = [], [], []
        for i, value in enumerate(values):
            if value.filename is None:
                # A URL or any other text: refused, never fetched.
                text = value.data.decode("utf-8", "replace")
                raise UploadError(
                    400,
                    f"{FIELD}[{i}] is a text value ({_preview(text)}), not a file upload; "
                    "send the image bytes (URLs are not fetched)",
                )
            names.append(f"'{value.filename}'" if value.filename else f"{FIELD}[{i}]")
            filenames.append(value.filename)
            blobs.append(value.data)
        # What the decode costs, from the headers: a 12 KiB PNG may claim 40 MP. A file over the pixel
        # limit (or unreadable) costs nothing: decode_image refuses it before decoding a pixel.
        pixels = [p if p <= self.max_pixels else 0 for p in map(header_pixels, blobs)]
        if sum(pixels) <= INLINE_DECODE_PIXELS and sum(map(len, blobs)) <= INLINE_DECODE_BYTES:
            decoded = self._decode(names, blobs, path.thumbnail)
        else:  # large: in a decode thread, under the worker's pixel budget; the event loop serves on
            try:  # images decode one after another, so the largest is what is held at once
                decoded = await self.decodes.run(max(pixels), self._decode, names, blobs, path.thumbnail)
            except DecodeBusy as exc:
                raise UploadError(503, f"server busy decoding large images ({exc}); retry shortly",
                                  headers={"Retry-After": "1"}) from None  # fmt: skip
        crops, thumbnails = decoded
        return Upload(names=names, images=to_model_input(crops),
                      thumbnails=tuple(zip(filenames, thumbnails, strict=True)) if path.thumbnail else ())  # fmt: skip

    def _decode(
        self, names: list[str], blobs: list[bytes], thumbnail: Thumbnailer | None
    ) -> tuple[list[np.ndarray], list[bytes]]:
        crops, thumbnails = [], []
        for name, data in zip(names, blobs, strict=True):
            try:
                image = decode_image(data, self.max_pixels)
                crops.append(to_fashion_mnist(image))
            except ImageError as exc:
                raise UploadError(400, f"file {name}: {exc}") from None
            except Exception:  # a hostile file can trip any decoder path; still its fault
                # The exception's text (a numerical library's, a decoder's) is for the log, not the client.
                log.warning("file %s failed in preprocessing", name, exc_info=True)
                raise UploadError(400, f"file {name}: cannot be read as an image") from None
            if thumbnail is not None:
                thumbnails.append(thumbnail(image, crops[-1]))
            del image  # one decoded image at a time: the budget counts the largest, not their sum
        return crops, thumbnails

    def _too_large(self, size: int | None) -> str:
        what = f"request body is {size:,} bytes" if size is not None else "request body is"
        return f"{what} over the limit of {self.max_request_bytes:,} bytes"


def _preview(value: str) -> str:
    return repr(value[:60] + ("…" if len(value) > 60 else ""))


async def forward_with_empty_json(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Call `app` with the request body replaced by `{}`: the upload was consumed here, and the
    endpoint takes its input from the scope instead of having BentoML parse multipart again."""
    scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")] + [
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
    ]
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"{}", "more_body": False}
        return await receive()

    await app(scope, replay, send)
