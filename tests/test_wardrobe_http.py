"""The wardrobe's endpoints on the real server, over HTTP, against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile

import httpx
import numpy as np
import pytest
from PIL import Image
from wardrobe_server import SAMPLES, client, wardrobe_server

from contract.store.export import class_folder, read_export

TOKEN = "s3cret-wardrobe-token"
SAMPLE_SHELVES = {"sneaker.png": "Sneaker", "trouser.png": "Trouser", "ankle-boot.png": "Ankle boot"}


def _sample(name: str) -> tuple[str, tuple[str, bytes, str]]:
    return ("images", (name, (SAMPLES / name).read_bytes(), "image/png"))


def _noise_png(seed: int, size: int = 28) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    """(url, token): SQLite with a token and 2 workers; PostgreSQL without a token on 127.0.0.1."""
    logs = tmp_path_factory.mktemp("wardrobe-server")
    if request.param == "sqlite":
        db, token = str(logs / "wardrobe.db"), TOKEN
    else:
        import uuid

        db, token = request.getfixturevalue("postgres").create_database(f"h{uuid.uuid4().hex[:10]}"), ""
    limits = {"WARDROBE_MAX_FILES": "8", "WARDROBE_MAX_FILE_BYTES": "200000"}
    with wardrobe_server(db, logs / "server.log", token=token, workers=2, **limits) as url:
        yield url, token


@pytest.fixture
def http(server):
    url, token = server
    with client(url, token) as c:
        for item in c.get("/wardrobe/items", params={"limit": 1000}).json()["items"]:
            c.delete(f"/wardrobe/items/{item['id']}")
        yield c


def test_uploaded_photos_are_classified_stored_and_shelved(http):
    response = http.post("/wardrobe/items", files=[_sample(n) for n in SAMPLE_SHELVES])
    assert response.status_code == 201, response.text
    added = response.json()
    assert [(i["filename"], i["shelf"], i["label_source"]) for i in added] == [
        (name, shelf, "model") for name, shelf in SAMPLE_SHELVES.items()]  # fmt: skip
    for item in added:
        assert len(item["model_sha256"]) == 64 and 0 < item["confidence"] <= 1 and len(item["top_k"]) == 3
        assert http.get(f"/wardrobe/items/{item['id']}").json() == item
    listed = http.get("/wardrobe/items").json()
    assert [i["id"] for i in listed["items"]] == [i["id"] for i in reversed(added)] and listed["next"] is None
    on_shelf = http.get("/wardrobe/items", params={"shelf": "Trouser"}).json()["items"]
    assert [i["filename"] for i in on_shelf] == ["trouser.png"]
    shelves = {s["name"]: s["count"] for s in http.get("/wardrobe/shelves").json()["shelves"]}
    assert (shelves["Sneaker"], shelves["Trouser"], shelves["Ankle boot"], shelves["unsure"]) == (1, 1, 1, 0)


def test_the_model_input_stored_is_exactly_what_classify_saw(http):
    [item] = http.post("/wardrobe/items", files=[_sample("sneaker.png")]).json()
    classified = http.post("/classify", files=[_sample("sneaker.png")]).json()[0]
    assert (item["predicted_label"], item["confidence"], item["top_k"]) == (
        classified["label"], classified["confidence"], classified["top_k"])  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(http.get("/wardrobe/export").content)) as archive:
        png = archive.read(f"Sneaker/{item['id']}.png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(Image.open(SAMPLES / "sneaker.png")))


def test_a_correction_moves_the_item_and_can_be_taken_back(http):
    [item] = http.post("/wardrobe/items", files=[_sample("sneaker.png")]).json()
    moved = http.patch(f"/wardrobe/items/{item['id']}", json={"label": "Sandal"})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["shelf"], moved.json()["label_source"]) == ("Sandal", "person")
    assert moved.json()["corrected_at"] is not None
    assert [i["id"] for i in http.get("/wardrobe/items", params={"corrected": "true"}).json()["items"]] == [item["id"]]
    back = http.patch(f"/wardrobe/items/{item['id']}", json={"label": None}).json()
    assert (back["shelf"], back["label_source"], back["corrected_at"]) == ("Sneaker", "model", None)


def test_a_deleted_item_is_gone(http):
    [item] = http.post("/wardrobe/items", files=[_sample("trouser.png")]).json()
    assert http.delete(f"/wardrobe/items/{item['id']}").status_code == 204
    assert http.get(f"/wardrobe/items/{item['id']}").status_code == 404
    assert http.delete(f"/wardrobe/items/{item['id']}").status_code == 404


def test_the_thumbnail_is_a_small_upright_webp(http):
    photo = Image.new("RGB", (1200, 600), "white")
    photo.paste((40, 40, 120), (100, 100, 700, 500))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° to display; the upright photo is portrait
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif)
    [item] = http.post("/wardrobe/items", files=[("images", ("wide.jpg", buffer.getvalue(), "image/jpeg"))]).json()
    response = http.get(item["thumbnail"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    assert "immutable" in response.headers["cache-control"]
    thumbnail = Image.open(io.BytesIO(response.content))
    assert thumbnail.format == "WEBP" and thumbnail.size == (128, 256)


def test_the_model_input_is_served_as_the_28x28_png_the_model_classified(http):
    photo = Image.new("RGB", (900, 700), (236, 231, 224))
    photo.paste((40, 52, 90), (300, 100, 600, 600))  # a dark garment on a light floor
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    files = [_sample("trouser.png"), ("images", ("floor.jpg", buffer.getvalue(), "image/jpeg"))]
    crop, shot = http.post("/wardrobe/items", files=files).json()
    answers = {}
    for item in (crop, shot):
        response = http.get(f"/wardrobe/items/{item['id']}/input.png")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert "immutable" in response.headers["cache-control"]  # an id's model input never changes
        answers[item["filename"]] = Image.open(io.BytesIO(response.content))
    assert {(i.format, i.mode, i.size) for i in answers.values()} == {("PNG", "L", (28, 28))}
    # A Fashion-MNIST crop reaches the model untouched: its model input is the file's own pixels.
    assert np.array_equal(np.asarray(answers["trouser.png"]), np.asarray(Image.open(SAMPLES / "trouser.png")))
    # A photo's is what the service's preprocessing made of it, the export's image of that item.
    with zipfile.ZipFile(io.BytesIO(http.get("/wardrobe/export").content)) as archive:
        exported = Image.open(io.BytesIO(archive.read(f"{class_folder(shot['label'])}/{shot['id']}.png")))
    assert np.array_equal(np.asarray(answers["floor.jpg"]), np.asarray(exported))
    assert np.asarray(answers["floor.jpg"]).max() > 128  # a white garment on black, not an empty frame


def test_the_thumbnails_in_view_come_in_one_request_as_data_urls(http):
    added = http.post("/wardrobe/items", files=[_sample("sneaker.png"), _sample("trouser.png")]).json()
    ids = [i["id"] for i in added]
    answer = http.get("/wardrobe/thumbnails", params={"ids": f"{ids[0]},999999,{ids[1]}"}).json()
    assert answer["missing"] == [999999] and sorted(answer["thumbnails"]) == sorted(map(str, ids))
    single = http.get(added[0]["thumbnail"]).content
    assert answer["thumbnails"][str(ids[0])] == "data:image/webp;base64," + base64.b64encode(single).decode()


def test_the_export_reads_back_with_the_contract_reader_and_the_person_wins(http):
    added = http.post("/wardrobe/items", files=[_sample("sneaker.png"), _sample("trouser.png")]).json()
    http.patch(f"/wardrobe/items/{added[0]['id']}", json={"label": "Bag"})
    response = http.get("/wardrobe/export")
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith('attachment; filename="wardrobe-export-')
    exported = read_export(io.BytesIO(response.content))
    assert [(i.id, i.file, i.label, i.label_source, i.predicted_label) for i in exported.items] == [
        (added[0]["id"], f"Bag/{added[0]['id']}.png", "Bag", "person", "Sneaker"),
        (added[1]["id"], f"Trouser/{added[1]['id']}.png", "Trouser", "model", "Trouser"),
    ]  # fmt: skip
    assert exported.classes[0] == "T-shirt/top" and len(exported.classes) == 10


async def _post_all(url: str, token: str, uploads: list[list]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c:
        return await asyncio.gather(*(c.post("/wardrobe/items", files=files) for files in uploads))


def test_parallel_uploads_from_many_clients_all_land(server, http):
    uploads = [[("images", (f"c{c}-{k}.png", _noise_png(c * 10 + k), "image/png")) for k in range(4)]
               for c in range(16)]  # fmt: skip
    responses = asyncio.run(_post_all(*server, uploads))
    assert [r.status_code for r in responses] == [201] * 16, [r.text for r in responses if r.status_code != 201]
    ids = [i["id"] for r in responses for i in r.json()]
    assert len(set(ids)) == 64
    listed = http.get("/wardrobe/items", params={"limit": 1000}).json()["items"]
    assert sorted(i["id"] for i in listed) == sorted(ids)
    assert sorted(i["filename"] for i in listed) == sorted(f"c{c}-{k}.png" for c in range(16) for k in range(4))


def test_a_bad_file_fails_its_upload_whole_naming_the_file(http):
    files = [_sample("sneaker.png"), ("images", ("broken.png", _noise_png(1)[:-200], "image/png"))]
    response = http.post("/wardrobe/items", files=files)
    assert response.status_code == 400
    assert "broken.png" in response.json()["error"] and "truncated or corrupt" in response.json()["error"]
    assert http.get("/wardrobe/items").json()["items"] == []


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"json": {"images": ["a.png"]}}, 415, "multipart/form-data"),
        ({"files": [("images", (None, "http://example.com/a.png"))]}, 400, "URLs are not fetched"),
        ({"files": [("photo", ("a.png", b"x"))]}, 400, "no files in field 'images'"),
        ({"files": [("images", ("big.png", b"x" * 300_000))]}, 413, "'big.png' is over the limit of 200,000 bytes"),
        ({"files": [("images", (f"{i}.png", b"x")) for i in range(9)]}, 413, "too many files: at most 8"),
    ],
    ids=["not-multipart", "url", "wrong-field", "file-too-big", "too-many-files"],
)
def test_uploads_get_the_same_4xx_as_classify(http, request_kwargs, status, message):
    response = http.post("/wardrobe/items", **request_kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    same = http.post("/classify", **request_kwargs)
    assert (same.status_code, same.json()["error"]) == (status, response.json()["error"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/wardrobe/items/999999", None, 404, "no wardrobe item with id 999999"),
        ("GET", "/wardrobe/items/abc", None, 404, "no wardrobe item with id 'abc'"),
        ("GET", "/wardrobe/items/999999/thumbnail", None, 404, "no wardrobe item with id 999999"),
        ("PATCH", "/wardrobe/items/999999", b'{"label": "Bag"}', 404, "no wardrobe item with id 999999"),
        ("PATCH", "/wardrobe/items/{id}", b'{"label": "Hat"}', 400, "unknown label 'Hat'"),
        ("PATCH", "/wardrobe/items/{id}", b'{"label": "Bag"', 400, "malformed JSON body"),
        ("PATCH", "/wardrobe/items/{id}", b'["Bag"]', 400, 'must be an object with "label"'),
        ("PATCH", "/wardrobe/items/{id}", b'{"label": "Bag", "id": 3}', 400, "unknown field(s) ['id']"),
        ("PUT", "/wardrobe/items/{id}", b"{}", 405, "PUT /wardrobe/items/"),
        ("GET", "/wardrobe/items?shelf=Hats", None, 400, "unknown shelf 'Hats'"),
        ("GET", "/wardrobe/items?limit=0", None, 400, "limit must be a whole number from 1 to 1000, got '0'"),
        ("GET", "/wardrobe/items?corrected=maybe", None, 400, "corrected must be true or false, got 'maybe'"),
        ("GET", "/wardrobe/items?colour=red", None, 400, "unknown query parameter(s) ['colour']"),
        ("GET", "/wardrobe/nothing", None, 404, "no such wardrobe endpoint: /wardrobe/nothing"),
        ("GET", "/wardrobe/items/999999/input.png", None, 404, "no wardrobe item with id 999999"),
        ("POST", "/wardrobe/items/{id}/input.png", b"", 405, "POST /wardrobe/items/"),
        ("GET", "/wardrobe/thumbnails?ids=1,x", None, 400, "ids must be item ids separated by commas, got '1,x'"),
        ("GET", "/wardrobe/thumbnails", None, 400, "ids must be item ids separated by commas, got ''"),
        ("GET", "/wardrobe/thumbnails?ids=" + ",".join(map(str, range(1, 102))), None, 400, "at most 100 ids"),
    ],
)
def test_bad_requests_get_a_4xx_naming_what_is_wrong(http, method, path, body, status, message):
    [item] = http.post("/wardrobe/items", files=[_sample("sneaker.png")]).json()
    response = http.request(method, path.format(id=item["id"]), content=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert http.get(f"/wardrobe/items/{item['id']}").json()["shelf"] == "Sneaker"  # nothing changed


def test_listing_pages_chain_with_next(http):
    http.post("/wardrobe/items", files=[("images", (f"{i}.png", _noise_png(i), "image/png")) for i in range(5)])
    seen, link = [], "/wardrobe/items?limit=2"
    while link:
        page = http.get(link).json()
        seen += [i["filename"] for i in page["items"]]
        link = page["next"]
    assert seen == [f"{i}.png" for i in reversed(range(5))]


def test_the_page_and_explorer_are_self_contained(http):
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    docs = http.get("/docs")
    assert docs.status_code == 200 and "googletagmanager" not in docs.text
    for text in (page.text, docs.text):
        assert "http://" not in text and "https://" not in text
    # The page is ES modules importing each other from /static: the policy's script-src 'self'
    # allows that, and a module is only run when served with a JavaScript media type.
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for module in sorted((SAMPLES.parent / "static").glob("*.js")):
        served = http.get(f"/static/{module.name}")
        assert served.status_code == 200 and served.content == module.read_bytes(), module.name
        assert served.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
