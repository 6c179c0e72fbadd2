"""What a wardrobe request asks for, read and checked: item ids, id lists, listing queries, PATCH bodies.

Each function takes a Starlette request and returns plain values, or raises `ClientError` with the
4xx status and a message naming what was wrong; the handlers in service/wardrobe.py answer it
as `{"error": ...}`.
"""

from __future__ import annotations

import json

from starlette.requests import Request

from contract.store import UNSURE
from contract.store.items import MAX_PAGE

MAX_JSON_BYTES = 64 * 1024
"""Largest PATCH body: a label is a few bytes."""
MAX_THUMBNAILS = 100
"""Most thumbnails one GET /wardrobe/thumbnails answers."""


class ClientError(Exception):
    """A request the wardrobe cannot answer as asked: the 4xx status and what was wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


MAX_ID_DIGITS = 18
"""Ids, `before` and `limit` are at most this many ASCII digits: they fit a signed 64-bit integer."""


def _whole_number(raw: str) -> int | None:
    """`raw` as a whole number if it is 1 to MAX_ID_DIGITS ASCII digits, else None. (str.isdigit
    alone would let "²" through to int(), and 20 digits through to the database's int64.)"""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= MAX_ID_DIGITS else None


def path_item_id(request: Request) -> int:
    """The `{item_id}` of the path; 404 when it cannot be an id."""
    raw = request.path_params["item_id"]
    if (item_id := _whole_number(raw)) is None:
        raise ClientError(404, f"no wardrobe item with id {raw!r} (ids are whole numbers)")
    return item_id


def query_ids(request: Request) -> list[int]:
    """`?ids=1,2,3` (GET /wardrobe/thumbnails) without repeats, in order; at most MAX_THUMBNAILS."""
    unknown = sorted(set(request.query_params) - {"ids"})
    if unknown:
        raise ClientError(400, f"unknown query parameter(s) {unknown}; use ids")
    raw = request.query_params.get("ids", "")
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    ids = [_whole_number(p) for p in parts]
    if not ids or None in ids:
        raise ClientError(400, f"ids must be item ids separated by commas, got {raw[:60]!r}")
    if len(ids) > MAX_THUMBNAILS:
        raise ClientError(400, f"at most {MAX_THUMBNAILS} ids per request, got {len(ids)}")
    return list(dict.fromkeys(ids))


def listing_query(request: Request, classes: tuple[str, ...]) -> tuple[str | None, bool | None, int, int | None]:
    """GET /wardrobe/items' `shelf`, `corrected`, `limit` and `before`, each checked."""
    query = request.query_params
    unknown = sorted(set(query) - {"shelf", "corrected", "limit", "before"})
    if unknown:
        raise ClientError(400, f"unknown query parameter(s) {unknown}; use shelf, corrected, limit, before")
    shelf = query.get("shelf")
    if shelf is not None and shelf not in (UNSURE, *classes):
        raise ClientError(400, f"unknown shelf {shelf!r}; use {UNSURE!r} or one of {list(classes)}")
    corrected = {"true": True, "false": False, None: None}.get(query.get("corrected"), "bad")
    if corrected == "bad":
        raise ClientError(400, f"corrected must be true or false, got {query.get('corrected')!r}")
    limit, before = _whole_number(query.get("limit", "100")), query.get("before")
    if limit is None or not 1 <= limit <= MAX_PAGE:
        raise ClientError(400, f"limit must be a whole number from 1 to {MAX_PAGE}, got {query.get('limit')!r}")
    before_id = _whole_number(before) if before is not None else None
    if before is not None and before_id is None:
        raise ClientError(400, f"before must be an item id (a whole number), got {before[:60]!r}")
    return shelf, corrected, limit, before_id


async def patch_label(request: Request, classes: tuple[str, ...]) -> str | None:
    """The `label` of a PATCH body: a class name, or null to give the decision back to the model."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise ClientError(413, f"JSON body over the limit of {MAX_JSON_BYTES:,} bytes")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClientError(400, f'malformed JSON body ({exc}); send {{"label": "<class name>"}}') from None
    except RecursionError:  # json's parser recurses per nesting level: ~1,000 levels end it
        raise ClientError(400, 'JSON body nested too deep; send {"label": "<class name>"}') from None
    if not isinstance(data, dict) or "label" not in data:
        raise ClientError(400, 'the JSON body must be an object with "label": a class name, or null')
    if extra := sorted(set(data) - {"label"}):
        raise ClientError(400, f'unknown field(s) {extra} in the JSON body; only "label" can change')
    label = data["label"]
    if label is not None and label not in classes:
        raise ClientError(400, f"unknown label {label!r}; use one of {list(classes)} (or null)")
    return label
