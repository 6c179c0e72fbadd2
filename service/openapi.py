"""/docs.json: BentoML's OpenAPI document (/classify, the probes) with every route of the mounted apps.

The paths come from the mounted Starlette apps' own route tables (service/wardrobe.py,
service/admin.py), their path parameters from each route's convertors; what each
operation takes and answers is described in OPERATIONS below, keyed by the route's
path. A route in neither OPERATIONS nor UNDOCUMENTED fails tests/test_openapi.py,
which also sends real requests and checks each answer against this document.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNDOCUMENTED = frozenset({"/static", "/wardrobe/{rest:path}", "/admin/{rest:path}"})
"""The page's static files and the catch-alls that answer 404 in JSON: routes, but no API."""

TAGS = [
    {"name": "classify", "description": "Which clothes the uploaded images show."},
    {"name": "wardrobe", "description": "The wardrobe: items, shelves, thumbnails, export, learning, models."},
    {"name": "registry", "description": "Model administration (WARDROBE_ADMIN_TOKEN): publish, promote, rollback."},
    {"name": "health", "description": "Probes and metrics (BentoML's own)."},
]
BENTOML_TAGS = {"Service APIs": "classify", "Infrastructure": "health"}

WARDROBE_SECURITY = [{"wardrobeToken": []}]
ADMIN_SECURITY = [{"adminToken": []}]
SECURITY_SCHEMES = {
    "wardrobeToken": {
        "type": "http", "scheme": "bearer",
        "description": "WARDROBE_TOKEN, as `Authorization: Bearer <token>`, on every /wardrobe/ request (else "
                       "401). Without WARDROBE_TOKEN the wardrobe answers only on a loopback bind (else 403).",
    },
    "adminToken": {
        "type": "http", "scheme": "bearer",
        "description": "WARDROBE_ADMIN_TOKEN, as `Authorization: Bearer <token>` (else 401); without it on the "
                       "server every /admin path answers 403.",
    },
}  # fmt: skip

_STR, _INT, _NUM, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}


def _null(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(required: dict[str, Any], **optional: Any) -> dict:
    return {"type": "object", "required": list(required), "properties": required | optional}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


TOP_K = {"type": "array", "items": _object({"label": _STR, "class_id": _INT, "probability": _NUM})}
SCHEMAS = {
    "Error": _object({"error": _STR}),
    "Item": _object({
        "id": _INT, "added_at": _STR, "filename": _STR, "label": _STR, "label_source": _STR, "shelf": _STR,
        "predicted_label": _STR, "confidence": _NUM, "top_k": TOP_K, "unsure": _BOOL,
        "model_sha256": _null(_STR), "corrected_label": _null(_STR), "corrected_at": _null(_STR), "thumbnail": _STR,
    }),
    "ItemPage": _object({"items": {"type": "array", "items": _ref("Item")}, "next": _null(_STR)}),
    "Thumbnails": _object({"thumbnails": {"type": "object", "additionalProperties": _STR},
                           "missing": {"type": "array", "items": _INT}}),
    "Shelves": _object({
        "classes": {"type": "array", "items": _STR},
        "shelves": {"type": "array", "items": _object({"name": _STR, "title": _STR, "count": _INT})},
        "total": _INT, "corrected": _INT,
        "model": _object({"sha256": _STR, "unsure_threshold": _null(_NUM)}),
        "limits": _object({"max_files": _INT, "max_file_bytes": _INT, "max_request_bytes": _INT}),
    }),
    "Learning": _object({
        "corrected": _INT, "waiting": _INT, "fine_tuned": _BOOL, "model_sha256": _STR,
        "model_test_accuracy": _null(_NUM), "shipped_test_accuracy": _null(_NUM), "warning": _null(_STR),
        "audit": {"type": "array", "items": _ref("Item")}, "commands": {"type": "array", "items": _STR},
    }),
    "ModelHistory": _object({"serving": _STR, "champion": _null(_STR),
                             "models": {"type": "array", "items": _object({"sha256": _STR, "state": _STR})}}),
    "RegistryModel": _object({
        "sha256": _STR, "state": _STR, "origin": _null(_STR), "size": _INT, "architecture": _null(_STR),
        "test_accuracy": _null(_NUM), "published_at": _null(_STR), "published_by": _null(_STR),
        "canary": _null({"type": "object"}), "note": _null(_STR),
    }),
    "Registry": _object({
        "champion": _null(_STR), "models": {"type": "array", "items": _ref("RegistryModel")},
        "workers": {"type": "array", "items": _object({"worker": _STR, "replica": _STR, "model_sha256": _STR,
                                                       "confirmed_at": _STR})},
    }),
    "Published": _object({"model": _ref("RegistryModel"), "new": _BOOL}),
    "Promoted": _object({"model": _ref("RegistryModel"), "canary": {"type": "object"}, "confirmed": {}}),
    "RolledBack": _object({"model": _ref("RegistryModel"), "rolled_back": _ref("RegistryModel"), "confirmed": {}}),
    "Ready": _object({"ready": _BOOL, "model_sha256": _null(_STR)}, model_test_accuracy=_null(_NUM),
                     shipped_test_accuracy=_null(_NUM), warning=_null(_STR)),
    "Refused": _object({"error": _STR}, canary=_null({"type": "object"})),
}  # fmt: skip

WHY = {
    400: "A malformed request; the error names what was wrong.",
    401: "No bearer token, or a wrong one.",
    403: "Not served here: no token on a non-loopback bind, administration off, or a cross-site Origin.",
    404: "No such item or model.",
    408: "The request body arrived too slowly.",
    409: "Refused: the champion already, no previous champion, or the canary or guard objected.",
    410: "Gone.",
    413: "Over a size limit.",
    415: "Not a multipart/form-data upload.",
    422: "The model breaks the model contract.",
    503: "Busy; try again after Retry-After seconds.",
}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    answers = {str(c): _json(_ref("Error"), WHY[c]) for c in codes}
    if "503" in answers:
        answers["503"]["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": _INT}}
    return answers


def _binary(media_type: str, description: str) -> dict:
    return {"description": description, "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}


def _query(name: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _wardrobe(summary: str, ok: dict, *codes: int, **more: Any) -> dict:
    responses = ok | _errors(*codes, 401, 403, 503)
    return {"tags": ["wardrobe"], "summary": summary, "security": WARDROBE_SECURITY, "responses": responses, **more}


def _admin(summary: str, ok: dict, *codes: int, **more: Any) -> dict:
    responses = ok | _errors(*codes, 401, 403, 503)
    return {"tags": ["registry"], "summary": summary, "security": ADMIN_SECURITY, "responses": responses, **more}


IMAGES = {"multipart/form-data": {"schema": _object({"images": {"type": "array", "items": {
    "type": "string", "format": "binary", "contentMediaType": "image/*"}}})}}  # fmt: skip
PAGE = {"tags": ["wardrobe"], "security": [], "responses": {"200": {"description": "HTML",
                                                                   "content": {"text/html": {}}}}}  # fmt: skip
OPERATIONS: dict[str, dict[str, dict]] = {
    "/": {"get": PAGE | {"summary": "The wardrobe page"}},
    "/docs": {"get": PAGE | {"summary": "This API explorer"}},
    "/wardrobe/items": {
        "get": _wardrobe("One page of items, newest first", {"200": _json(_ref("ItemPage"), "The page")}, 400,
                         parameters=[
                             _query("shelf", _STR, "Only this shelf: a class name or the unsure shelf"),
                             _query("corrected", _BOOL, "Only corrected (true) or uncorrected (false) items"),
                             _query("limit", {"type": "integer", "minimum": 1}, "Items per page (default 100)"),
                             _query("before", _INT, "Items older than this id (the `next` link)"),
                         ]),
        "post": _wardrobe("Add uploaded photos: classified and stored",
                          {"201": _json({"type": "array", "items": _ref("Item")}, "The new items, in upload order")},
                          400, 408, 413, 415, requestBody={"required": True, "content": IMAGES}),
    },
    "/wardrobe/items/{item_id}": {
        "get": _wardrobe("One item", {"200": _json(_ref("Item"), "The item")}, 404),
        "patch": _wardrobe("Correct an item's label (null: the model's decision again)",
                           {"200": _json(_ref("Item"), "The corrected item")}, 400, 404, 413,
                           requestBody={"required": True, "content": {"application/json": {
                               "schema": _object({"label": _null(_STR)})}}}),
        "delete": _wardrobe("Delete an item", {"204": {"description": "Deleted"}}, 404),
    },
    "/wardrobe/items/{item_id}/thumbnail": {
        "get": _wardrobe("The item's thumbnail", {"200": _binary("image/webp", "The thumbnail")}, 404),
    },
    "/wardrobe/items/{item_id}/input.png": {
        "get": _wardrobe("The 28×28 image the model classified", {"200": _binary("image/png", "8-bit grey")}, 404),
    },
    "/wardrobe/thumbnails": {
        "get": _wardrobe("Many thumbnails as data: URLs", {"200": _json(_ref("Thumbnails"), "By item id")}, 400,
                         parameters=[_query("ids", _STR, "Item ids separated by commas (at most 100)", True)]),
    },
    "/wardrobe/shelves": {"get": _wardrobe("Shelves and their counts, the model, the upload limits",
                                           {"200": _json(_ref("Shelves"), "The shelves")})},
    "/wardrobe/export": {"get": _wardrobe("The labelled items as a ZIP of images by class",
                                          {"200": _binary("application/zip", "The export")})},
    "/wardrobe/learning": {"get": _wardrobe("Corrections waiting for a fine-tune, its commands, an audit sample",
                                            {"200": _json(_ref("Learning"), "The loop's state")})},
    "/wardrobe/models": {"get": _wardrobe("The registry's history (read-only)",
                                          {"200": _json(_ref("ModelHistory"), "Every model")})},
    "/wardrobe/models/{ref}.onnx": {
        "get": _wardrobe("A registry model's ONNX file: `champion` or a SHA-256 (a prefix of 8+ hex digits)",
                         {"200": _binary("application/octet-stream", "The .onnx file")}, 400, 404),
    },
    "/admin/models": {
        "get": _admin("The registry: every model, the champion, what each worker serves",
                      {"200": _json(_ref("Registry"), "The registry")}),
        "post": _admin("Publish a model: the body is the .onnx file",
                       {"201": _json(_ref("Published"), "Published"), "200": _json(_ref("Published"), "Known")},
                       413, 422, requestBody={"required": True, "content": {"application/octet-stream": {
                           "schema": {"type": "string", "format": "binary"}}}}),
    },
    "/admin/models/rollback": {
        "post": _admin("The previous champion comes back", {"200": _json(_ref("RolledBack"), "Rolled back")}, 409),
    },
    "/admin/models/{sha}/promote": {
        "post": _admin("Contract check, canary and guard, then champion or refused",
                       {"200": _json(_ref("Promoted"), "The new champion"), "409": _json(_ref("Refused"), WHY[409])},
                       400, 404, 413, 422,
                       parameters=[_query("force", _BOOL, "Override the canary and guard (needs a reason)"),
                                   _query("reason", _STR, "Why it is forced (recorded)")],
                       requestBody={"required": False, "content": {"application/json": {
                           "schema": {"type": "object", "properties": {"force": _BOOL, "reason": _STR},
                                      "additionalProperties": False}}}}),
    },
    "/admin/reload": {
        "post": _admin("Gone: models never come from a server path", {}, 410, deprecated=True),
    },
}  # fmt: skip
CLASSIFY_ERRORS = _errors(400, 408, 413, 415, 503)


def route_paths(app: Starlette, prefix: str = "") -> dict[str, Route | Mount]:
    """Every route of `app` by its full path (`prefix` + the route's path)."""
    return {prefix + route.path: route for route in app.routes if isinstance(route, Route | Mount)}


def _path_parameters(route: Route) -> list[dict]:
    return [{"name": name, "in": "path", "required": True, "schema": _STR} for name in route.param_convertors]


def _files_as_binary(schema: Any) -> Any:
    """BentoML writes a file as `{"type": "file"}` (OpenAPI 3.0 style); JSON Schema (3.1) has no such type."""
    if isinstance(schema, dict):
        if schema.get("type") == "file":
            return {**schema, "type": "string", "format": "binary"}
        return {k: _files_as_binary(v) for k, v in schema.items()}
    return [_files_as_binary(v) for v in schema] if isinstance(schema, list) else schema


def document(bentoml_document: dict, apps: dict[str, Starlette]) -> dict:
    """BentoML's document with the mounted apps' routes (by mount prefix), tags and security schemes."""
    spec = _files_as_binary(bentoml_document)  # a copy
    spec["openapi"] = "3.1.0"
    for operations in spec["paths"].values():
        for operation in operations.values():
            operation["tags"] = [BENTOML_TAGS.get(t, t) for t in operation.get("tags", [])]
    if classify := spec["paths"].get("/classify", {}).get("post"):  # BentoML's 404 and 500 are never ours
        classify["responses"] = {"200": classify["responses"]["200"]} | CLASSIFY_ERRORS
    if readyz := spec["paths"].get("/readyz", {}).get("get"):  # service/readyz.py names the served model
        readyz["responses"]["200"] = _json(_ref("Ready"), "Ready: the model this worker serves")
    for prefix, app in apps.items():
        for path, route in route_paths(app, prefix).items():
            if path in UNDOCUMENTED or path not in OPERATIONS:
                continue
            parameters = _path_parameters(route) if isinstance(route, Route) else []
            spec["paths"][path] = {
                method: operation | {"parameters": parameters + operation.get("parameters", [])}
                for method, operation in OPERATIONS[path].items()
            }  # fmt: skip
    spec["tags"] = TAGS
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {}).update(SCHEMAS)
    components["securitySchemes"] = SECURITY_SCHEMES
    return spec


class OpenApiDocument:
    """GET /docs.json answers `document(BentoML's document, apps)`, built on the first request."""

    def __init__(self, app: ASGIApp, *, apps: dict[str, Starlette]):
        self.app = app
        self.apps = apps
        self.body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json" or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        if self.body is None:
            status, chunks = [], []

            async def capture(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                else:
                    chunks.append(message.get("body", b""))

            await self.app(scope, receive, capture)
            if status != [200]:
                return await JSONResponse({"error": "the OpenAPI document is not available"}, 503,
                                          headers={"Retry-After": "1"})(scope, receive, send)  # fmt: skip
            self.body = json.dumps(document(json.loads(b"".join(chunks)), self.apps)).encode()
        await Response(self.body, media_type="application/json")(scope, receive, send)
