"""The OpenAPI document at /docs.json is held to the server: every route is in it, and real answers match it."""

from __future__ import annotations

import httpx
import pytest
from jsonschema import Draft202012Validator
from wardrobe_server import MODEL, SAMPLES, client, wardrobe_server

TOKEN, ADMIN = "wardrobe-test-token", "admin-test-token"
MISSING = "999999"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: the wardrobe's token and the admin token set; two items in its wardrobe."""
    directory = tmp_path_factory.mktemp("openapi")
    with wardrobe_server(str(directory / "w.db"), directory / "server.log", token=TOKEN,
                         WARDROBE_ADMIN_TOKEN=ADMIN) as url, client(url, TOKEN) as http:  # fmt: skip
        files = [("images", (p.name, p.read_bytes(), "image/png")) for p in sorted(SAMPLES.glob("*.png"))[:2]]
        added = http.post("/wardrobe/items", files=files)
        assert added.status_code == 201, added.text
        spec = http.get("/docs.json").json()
        champion = http.get("/wardrobe/models").json()["champion"]
        yield {"url": url, "spec": spec, "ids": [i["id"] for i in added.json()], "champion": champion}


def sample() -> list:
    return [("images", ("sneaker.png", (SAMPLES / "sneaker.png").read_bytes(), "image/png"))]


W, A, NONE = "wardrobe", "admin", "none"
CASES = [  # (documented path, method, concrete path with {id}, {id2}, {champion}, who sends it, request arguments)
    ("/", "get", "/", NONE, {}),
    ("/docs", "get", "/docs", NONE, {}),
    ("/classify", "post", "/classify", NONE, {"files": sample()}),
    ("/classify", "post", "/classify", NONE, {"content": b"x", "headers": {"Content-Type": "text/plain"}}),
    ("/livez", "get", "/livez", NONE, {}),
    ("/readyz", "get", "/readyz", NONE, {}),
    ("/healthz", "get", "/healthz", NONE, {}),
    ("/metrics", "get", "/metrics", NONE, {}),
    ("/wardrobe/items", "get", "/wardrobe/items", W, {}),
    ("/wardrobe/items", "get", "/wardrobe/items?limit=0", W, {}),
    ("/wardrobe/items", "get", "/wardrobe/items", NONE, {}),
    ("/wardrobe/items", "post", "/wardrobe/items", W, {"files": sample()}),
    ("/wardrobe/items", "post", "/wardrobe/items", W, {"content": b"x", "headers": {"Content-Type": "text/plain"}}),
    ("/wardrobe/items", "post", "/wardrobe/items", NONE, {"files": sample()}),
    ("/wardrobe/items/{item_id}", "get", "/wardrobe/items/{id}", W, {}),
    ("/wardrobe/items/{item_id}", "get", f"/wardrobe/items/{MISSING}", W, {}),
    ("/wardrobe/items/{item_id}", "get", "/wardrobe/items/{id}", NONE, {}),
    ("/wardrobe/items/{item_id}", "patch", "/wardrobe/items/{id}", W, {"json": {"label": "Trouser"}}),
    ("/wardrobe/items/{item_id}", "patch", "/wardrobe/items/{id}", W, {"json": {"label": "no such class"}}),
    ("/wardrobe/items/{item_id}", "patch", "/wardrobe/items/{id}", NONE, {"json": {"label": None}}),
    ("/wardrobe/items/{item_id}", "delete", "/wardrobe/items/{id2}", NONE, {}),
    ("/wardrobe/items/{item_id}", "delete", "/wardrobe/items/{id2}", W, {}),
    ("/wardrobe/items/{item_id}", "delete", "/wardrobe/items/{id2}", W, {}),  # gone now: 404
    ("/wardrobe/items/{item_id}/thumbnail", "get", "/wardrobe/items/{id}/thumbnail", W, {}),
    ("/wardrobe/items/{item_id}/thumbnail", "get", f"/wardrobe/items/{MISSING}/thumbnail", W, {}),
    ("/wardrobe/items/{item_id}/thumbnail", "get", "/wardrobe/items/{id}/thumbnail", NONE, {}),
    ("/wardrobe/items/{item_id}/input.png", "get", "/wardrobe/items/{id}/input.png", W, {}),
    ("/wardrobe/items/{item_id}/input.png", "get", f"/wardrobe/items/{MISSING}/input.png", W, {}),
    ("/wardrobe/items/{item_id}/input.png", "get", "/wardrobe/items/{id}/input.png", NONE, {}),
    ("/wardrobe/thumbnails", "get", "/wardrobe/thumbnails?ids={id}," + MISSING, W, {}),
    ("/wardrobe/thumbnails", "get", "/wardrobe/thumbnails", W, {}),
    ("/wardrobe/thumbnails", "get", "/wardrobe/thumbnails?ids={id}", NONE, {}),
    ("/wardrobe/shelves", "get", "/wardrobe/shelves", W, {}),
    ("/wardrobe/shelves", "get", "/wardrobe/shelves", NONE, {}),
    ("/wardrobe/export", "get", "/wardrobe/export", W, {}),
    ("/wardrobe/export", "get", "/wardrobe/export", NONE, {}),
    ("/wardrobe/learning", "get", "/wardrobe/learning", W, {}),
    ("/wardrobe/learning", "get", "/wardrobe/learning", NONE, {}),
    ("/wardrobe/models", "get", "/wardrobe/models", W, {}),
    ("/wardrobe/models", "get", "/wardrobe/models", NONE, {}),
    ("/wardrobe/models/{ref}.onnx", "get", "/wardrobe/models/champion.onnx", W, {}),
    ("/wardrobe/models/{ref}.onnx", "get", "/wardrobe/models/not-a-sha.onnx", W, {}),
    ("/wardrobe/models/{ref}.onnx", "get", f"/wardrobe/models/{'f' * 64}.onnx", W, {}),
    ("/wardrobe/models/{ref}.onnx", "get", "/wardrobe/models/champion.onnx", NONE, {}),
    ("/admin/models", "get", "/admin/models", A, {}),
    ("/admin/models", "get", "/admin/models", W, {}),  # the wardrobe's token is not the admin's
    ("/admin/models", "get", "/admin/models", NONE, {}),
    ("/admin/models", "post", "/admin/models", A, {"content": MODEL.read_bytes()}),  # known already: 200
    ("/admin/models", "post", "/admin/models", A, {"content": b"not a model"}),
    ("/admin/models", "post", "/admin/models", NONE, {"content": b"not a model"}),
    ("/admin/models/rollback", "post", "/admin/models/rollback", A, {}),  # no previous champion: 409
    ("/admin/models/rollback", "post", "/admin/models/rollback", NONE, {}),
    ("/admin/models/{sha}/promote", "post", "/admin/models/{champion}/promote", A, {}),  # the champion: 409
    ("/admin/models/{sha}/promote", "post", f"/admin/models/{'f' * 64}/promote", A, {}),
    ("/admin/models/{sha}/promote", "post", "/admin/models/{champion}/promote", A, {"content": b"["}),
    ("/admin/models/{sha}/promote", "post", "/admin/models/{champion}/promote", NONE, {}),
    ("/admin/reload", "post", "/admin/reload", A, {}),
    ("/admin/reload", "post", "/admin/reload", NONE, {}),
]  # fmt: skip
TOKENS = {W: TOKEN, A: ADMIN, NONE: ""}


def mounted_routes() -> set[str]:
    """Every route of the apps the service mounts, by full path, from their own route tables."""
    from service.openapi import route_paths
    from service.service import Wardrobe

    return {path for app, prefix, _ in Wardrobe.mount_apps for path in route_paths(app, prefix.rstrip("/"))}


def test_every_route_of_the_mounted_apps_is_in_the_document(server):
    from service.openapi import UNDOCUMENTED

    routes = mounted_routes()
    assert "/wardrobe/items/{item_id}/input.png" in routes and "/admin/models/{sha}/promote" in routes
    undocumented = routes - UNDOCUMENTED - set(server["spec"]["paths"])
    assert not undocumented, f"routes missing from /docs.json: {sorted(undocumented)}"


def test_the_document_is_openapi_3_1_with_tags_and_both_token_schemes(server):
    spec = server["spec"]
    assert spec["openapi"].startswith("3.1")
    assert {t["name"] for t in spec["tags"]} == {"classify", "wardrobe", "registry", "health"}
    assert set(spec["components"]["securitySchemes"]) == {"wardrobeToken", "adminToken"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation["tags"][0] in {"classify", "wardrobe", "registry", "health"}, (method, path)
            for answer in operation["responses"].values():
                for content in answer.get("content", {}).values():
                    if "schema" in content:
                        Draft202012Validator.check_schema(content["schema"])


def test_every_documented_operation_is_exercised_here(server):
    documented = {(p, m) for p, operations in server["spec"]["paths"].items() for m in operations}
    assert documented == {(path, method) for path, method, *_ in CASES}


@pytest.mark.parametrize(("documented", "method", "path", "who", "arguments"), CASES,
                         ids=[f"{c[1]} {c[2]} as {c[3]}" for c in CASES])  # fmt: skip
def test_the_answer_is_one_the_document_gives(server, documented, method, path, who, arguments):
    spec = server["spec"]
    operation = spec["paths"][documented][method]
    ids = server["ids"]
    concrete = path.format(id=ids[0], id2=ids[1], champion=server["champion"])
    headers = {"Authorization": f"Bearer {TOKENS[who]}"} if TOKENS[who] else {}
    headers |= arguments.get("headers", {})
    request = {k: v for k, v in arguments.items() if k != "headers"}
    answer = httpx.request(method.upper(), server["url"] + concrete, headers=headers, timeout=60, **request)
    if operation.get("security") and who == NONE:
        assert answer.status_code == 401, answer.text  # the server has both tokens set
    status = str(answer.status_code)
    assert status in operation["responses"], f"{answer.status_code} not documented: {answer.text[:300]}"
    content = operation["responses"][status].get("content", {})
    media_type = answer.headers.get("content-type", "").split(";")[0]
    if content:
        assert media_type in content, f"{media_type} not documented for {status}: {list(content)}"
    if media_type == "application/json" and (schema := content.get(media_type, {}).get("schema")):
        Draft202012Validator({**schema, "components": spec["components"]}).validate(answer.json())
    if status == "503":
        assert answer.headers["Retry-After"].isdigit()
