"""GET /wardrobe/models/{sha256}.onnx: a registry model, downloaded from the page's "Teach the model"
panel (the same bytes as `wardrobe models export`). Behind the wardrobe's own access rules, as
GET /wardrobe/models is. "champion" or a SHA-256 (prefix of at least 8 hex digits); a malformed or
unknown one is a 4xx naming it.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contract.store.registry import RegistryError
from service.model_export import model_bytes


async def model_download(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        return JSONResponse({"error": f"{request.method} {request.url.path}: use GET"}, status_code=405,
                            headers={"Allow": "GET"})  # fmt: skip
    ref = request.path_params["ref"]
    if len(ref) > 64:
        return JSONResponse({"error": f"model {ref[:16]}…: not a SHA-256"}, status_code=400)
    registry = request.app.state.registry
    try:
        sha, data = await anyio.to_thread.run_sync(model_bytes, registry, ref)
    except RegistryError as exc:
        status = 404 if str(exc).startswith("no model") or "no champion" in str(exc) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="wardrobe-model-{sha[:12]}.onnx"',
        "X-Model-SHA256": sha,
        "Cache-Control": "private, max-age=31536000, immutable" if ref == sha else "no-cache",
    })  # fmt: skip
