"""Reading an upload: `read_upload(request, limits)` turns a multipart body into checked model input.

Step 2 of 3 of one POST /classify (service/service.py takes the request,
this module reads it, service/batching.py runs the model). BentoML 1.4 has no
request-size limit, downloads any URL a client puts in a file field, and
answers a binary part in an undeclared field with a 500; so the endpoint does
not let BentoML parse the body, it calls `read_upload`, which reads it as it
streams in under our limits (per request and per file, file count), decodes
and checks every image (pixel limit, format, truncation, smallest size), and
returns the float32 [N, 1, 28, 28] batch, or raises `UploadError` for the
client's mistake (a 4xx naming the file, sent even while the body is still
arriving) or `admission.Busy` when the decode budget is full (503). Every
request's images are thus valid before they can join a shared batch. The
wardrobe's POST /wardrobe/items reads its uploads with the same function.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from starlette.datastructures import Headers
from starlette.formparsers import FormParser, MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from contract.preprocess import ImageError, decode_image, header_pixels, to_fashion_mnist, to_model_input
from service.decode_budget import INLINE_DECODE_BYTES, INLINE_DECODE_PIXELS, DecodeBudget
from service.multipart import MultipartError, Part, PartTooLarge, TooManyParts, read_parts

log = logging.getLogger(__name__)

FIELD = "images"
"""The multipart field that holds the files, on /classify and /wardrobe/items alike."""


class UploadError(Exception):
    """A client mistake in the upload: answered with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.body_unread = False
        """Set when the answer goes out before the body has all arrived: the connection then closes."""

    def response(self) -> JSONResponse:
        # A connection whose body is still arriving closes after the answer, reading what the
        # client still sends first so that it reads the answer (service/lingering.py).
        headers = {"Connection": "close"} if self.body_unread else None
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


Thumbnailer = Callable[[Image.Image, np.ndarray], bytes]
"""(decoded image, its uint8 28×28 crop) -> thumbnail bytes, made in the same decode."""


@dataclass(frozen=True)
class UploadLimits:
    """What one upload may be and cost (WARDROBE_MAX_*, service/settings.py), and the worker's decode budget."""

    max_files: int
    max_file_bytes: int
    max_request_bytes: int
    max_pixels: int
    decodes: DecodeBudget
    """Shared by every upload of the worker: large decodes run there, in threads, under a pixel budget."""

    @classmethod
    def from_settings(cls, settings) -> UploadLimits:
        return cls(max_files=settings.max_files, max_file_bytes=settings.max_file_bytes,
                   max_request_bytes=settings.max_request_bytes, max_pixels=settings.max_pixels,
                   decodes=DecodeBudget.from_settings(settings))  # fmt: skip


@dataclass(frozen=True)
class Upload:
    """A request's checked images: the names the client gave and the model input, in order."""

    names: list[str]
    images: np.ndarray  # float32 [N, 1, 28, 28]
    thumbnails: tuple[tuple[str, bytes], ...] = ()
    """(filename, thumbnail) of each upload, in order, when a thumbnailer was given."""


class _BodyTooLarge(Exception):
    pass


async def read_upload(request: Request, limits: UploadLimits, thumbnail: Thumbnailer | None = None) -> Upload:
    """The request's images in field `images`, read, limited and decoded; UploadError (4xx) for the
    client's mistake, admission.Busy (503) when the decode budget is full, ClientDisconnect when
    the client has gone."""
    received = 0
    more_body = True

    async def body() -> AsyncIterator[bytes]:
        nonlocal received, more_body
        while more_body:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            more_body = message.get("more_body", False)
            received += len(chunk)
            if received > limits.max_request_bytes:
                raise _BodyTooLarge()
            if chunk:
                yield chunk

    try:
        return await _read(request.headers, body(), limits, thumbnail)
    except UploadError as exc:
        exc.body_unread = more_body
        raise


async def _read(
    headers: Headers, body: AsyncIterator[bytes], limits: UploadLimits, thumbnail: Thumbnailer | None
) -> Upload:
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
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise UploadError(413, _too_large(int(declared), limits.max_request_bytes))
    try:
        if text_form:
            form = await FormParser(headers, body, max_fields=limits.max_files).parse()
            parts = [Part(name, None, value.encode()) for name, value in form.multi_items()]
        else:
            parts = await read_parts(content_type, body, max_parts=limits.max_files,
                                     max_part_bytes=limits.max_file_bytes)  # fmt: skip
    except _BodyTooLarge:
        raise UploadError(413, _too_large(None, limits.max_request_bytes)) from None
    except TooManyParts:
        raise UploadError(413, f"too many files: at most {limits.max_files} per request") from None
    except PartTooLarge as exc:
        name = f"'{exc.part.filename}'" if exc.part.filename else "a file"
        raise UploadError(413, f"file {name} is over the limit of {limits.max_file_bytes:,} bytes per file") from None
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
    pixels = [p if p <= limits.max_pixels else 0 for p in map(header_pixels, blobs)]
    if sum(pixels) <= INLINE_DECODE_PIXELS and sum(map(len, blobs)) <= INLINE_DECODE_BYTES:
        decoded = _decode(names, blobs, limits.max_pixels, thumbnail)
    else:  # large: in a decode thread, under the worker's pixel budget; the event loop serves on.
        # Images decode one after another, so the largest is what is held at once. A full budget
        # raises DecodeBusy, an admission.Busy: the caller answers 503 like every other overload.
        decoded = await limits.decodes.run(max(pixels), _decode, names, blobs, limits.max_pixels, thumbnail)
    crops, thumbnails = decoded
    return Upload(names=names, images=to_model_input(crops),
                  thumbnails=tuple(zip(filenames, thumbnails, strict=True)) if thumbnail else ())  # fmt: skip


def _decode(
    names: list[str], blobs: list[bytes], max_pixels: int, thumbnail: Thumbnailer | None
) -> tuple[list[np.ndarray], list[bytes]]:
    crops, thumbnails = [], []
    for name, data in zip(names, blobs, strict=True):
        try:
            image = decode_image(data, max_pixels)
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


def _too_large(size: int | None, limit: int) -> str:
    what = f"request body is {size:,} bytes" if size is not None else "request body is"
    return f"{what} over the limit of {limit:,} bytes"


def _preview(value: str) -> str:
    return repr(value[:60] + ("…" if len(value) > 60 else ""))
