"""The real service over HTTP: `bentoml serve` in a subprocess, the tiny model, small limits."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from contract.preprocess import decode_image, to_fashion_mnist, to_model_input
from contract.runtime import load_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "service" / "samples"


@pytest.fixture(scope="module")
def server(shared_server) -> str:
    """The session's server (tests/conftest.py): the tiny model, small limits, queue bound 6."""
    return shared_server.url


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _noise_png(seed: int, size: int = 28) -> bytes:
    rng = np.random.default_rng(seed)
    return _png(rng.integers(0, 256, (size, size), dtype=np.uint8))


def _classify(url: str, files: list, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/classify", files=files, timeout=30, **kwargs)


def _good(url: str) -> None:
    response = _classify(url, [("images", ("sneaker.png", (SAMPLES / "sneaker.png").read_bytes()))])
    assert response.status_code == 200, response.text
    assert len(response.json()) == 1


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = [float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(values)


def test_one_image_gets_the_contract_answer(server, tiny_model_path):
    response = _classify(server, [("images", ("sneaker.png", (SAMPLES / "sneaker.png").read_bytes()))])
    assert response.status_code == 200
    [answer] = response.json()
    assert set(answer) == {"label", "class_id", "confidence", "top_k", "unsure", "model_sha256"}
    assert answer["unsure"] is (answer["confidence"] < load_model(tiny_model_path).info.unsure_threshold)
    assert answer["model_sha256"] == load_model(tiny_model_path).info.sha256  # which model answered
    assert answer["top_k"][0] == {
        "label": answer["label"], "class_id": answer["class_id"],
        "probability": answer["confidence"],
    }  # fmt: skip
    assert len(answer["top_k"]) == 3


def test_many_images_are_answered_in_request_order(server, tiny_model_path, fmnist):
    # Real garments, other than the samples (test images 2 and 9): each gets its own answer, where
    # noise may be isolated to the same blank frame.
    blobs = [_png(image) for image in fmnist.test_images[100:105]] + [(SAMPLES / "trouser.png").read_bytes()]
    classifier = load_model(tiny_model_path, device="cpu", threads=1)
    inputs = to_model_input([to_fashion_mnist(decode_image(b)) for b in blobs])
    expected = classifier.answers(classifier.probabilities(inputs), 3)
    assert len({json.dumps(e) for e in expected}) == len(blobs)  # order is visible
    response = _classify(server, [("images", (f"{i}.png", b)) for i, b in enumerate(blobs)])
    assert response.status_code == 200
    got = response.json()
    for answer, want in zip(got, expected, strict=True):
        assert answer["class_id"] == want["class_id"]
        assert answer["confidence"] == pytest.approx(want["confidence"], abs=2e-4)


def _encoded(fmt: str, mode: str, **options) -> bytes:
    crop = np.asarray(Image.open(SAMPLES / "sneaker.png").convert("L"))
    image = Image.fromarray(crop).convert(mode)
    if mode == "I;16":
        image = Image.fromarray(crop.astype(np.uint16) * 257)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


ACCEPTED = {
    "jpeg-rgb": ("JPEG", "RGB", {}),
    "jpeg-cmyk": ("JPEG", "CMYK", {}),
    "png-rgba": ("PNG", "RGBA", {}),
    "png-16bit": ("PNG", "I;16", {}),
    "png-palette": ("PNG", "P", {}),
    "webp": ("WEBP", "RGB", {}),
    "heic": ("HEIF", "RGB", {}),
    "avif": ("AVIF", "RGB", {}),
    "bmp": ("BMP", "RGB", {}),
    "gif": ("GIF", "P", {}),
    "tiff": ("TIFF", "L", {}),
}


@pytest.mark.parametrize("kind", list(ACCEPTED))
def test_every_accepted_format_and_mode_is_classified(server, tiny_model_path, kind):
    fmt, mode, options = ACCEPTED[kind]
    data = _encoded(fmt, mode, **options)
    response = _classify(server, [("images", (f"sneaker.{kind}", data))])
    assert response.status_code == 200, response.text
    # the server's answer is the model's answer for these very bytes, decoded the contract's way
    classifier = load_model(tiny_model_path, device="cpu", threads=1)
    probabilities = classifier.probabilities(to_model_input([to_fashion_mnist(decode_image(data))]))
    [want] = classifier.answers(probabilities, 3)
    [got] = response.json()
    assert (got["label"], got["class_id"]) == (want["label"], want["class_id"])
    assert got["label"] == classifier.classes[got["class_id"]]
    assert got["confidence"] == pytest.approx(want["confidence"], abs=2e-4)


def _truncated_png() -> bytes:
    data = _noise_png(1)
    return data[: len(data) // 2]


def _encoded_size(fmt: str, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(SAMPLES / "sneaker.png").convert("RGB").resize((width, height)).save(buffer, fmt)
    return buffer.getvalue()


def _bomb_png() -> bytes:
    # 4,000 x 4,000 black pixels compress to a few kB: far over the 10,000-pixel test limit.
    return _png(np.zeros((4000, 4000), dtype=np.uint8))


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("sneaker.png", (SAMPLES / "sneaker.png").read_bytes())
    return buffer.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="9"/></svg>'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

BAD_FILES = {
    "empty": (b"", "empty"),
    "text": (b"label,class\nsneaker,7\n", "text"),
    "truncated": (_truncated_png(), "truncated or corrupt"),
    "svg": (SVG, "SVG"),
    "pdf": (PDF, "PDF"),
    "zip": (_zip(), "ZIP"),
    "bomb": (_bomb_png(), "over the limit"),
    "truncated-heic": (_encoded("HEIF", "RGB")[:-40], "truncated or corrupt"),
    "big-avif": (_encoded_size("AVIF", 200, 100), "200×100 = 20,000 pixels, over the limit"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_file_is_a_400_naming_it_and_the_server_still_serves(server, kind):
    data, reason = BAD_FILES[kind]
    files = [("images", ("fine.png", _noise_png(0))), ("images", (f"bad-{kind}.png", data))]
    response = _classify(server, files)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert f"bad-{kind}.png" in error and reason in error
    _good(server)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 3), (1, 20), (20, 1)])
def test_an_image_too_small_to_hold_a_garment_is_a_400_saying_its_size_and_the_smallest(server, size):
    files = [("images", ("x.png", _png(np.full(size[::-1], 255, dtype=np.uint8))))]
    response = _classify(server, files)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error == f"file 'x.png': image is {size[0]}×{size[1]} pixels, too small to hold a garment " \
                    "(smallest accepted: 8×8)"  # fmt: skip
    assert "matrix" not in error.lower()


def test_a_file_over_the_per_file_limit_is_a_413_naming_it(server):
    big = np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)  # ~90 kB PNG
    data = _png(big) * 3  # ~270 kB, over the 200 kB per-file limit
    response = _classify(server, [("images", ("huge.png", data))])
    assert response.status_code == 413
    assert "huge.png" in response.json()["error"]
    _good(server)


def test_a_body_over_the_per_request_limit_is_a_413(server):
    part = os.urandom(150_000)  # each under the per-file limit, together over 1 MB
    response = _classify(server, [("images", (f"{i}.png", part)) for i in range(7)])
    assert response.status_code == 413
    assert "request body" in response.json()["error"]
    _good(server)


def test_a_declared_oversized_body_is_refused_before_reading(server):
    body = b"x" * 1_500_000
    response = httpx.post(
        f"{server}/classify", content=body, timeout=30,
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )  # fmt: skip
    assert response.status_code == 413
    assert "over the limit of 1,000,000 bytes" in response.json()["error"]
    _good(server)


def test_too_many_files_is_a_413(server):
    response = _classify(server, [("images", (f"{i}.png", _noise_png(i))) for i in range(9)])
    assert response.status_code == 413
    assert "too many files" in response.json()["error"]
    _good(server)


@pytest.mark.parametrize(
    "files",
    [
        [("image", ("sneaker.png", (SAMPLES / "sneaker.png").read_bytes()))],
        [("note", (None, "no file here"))],
    ],
    ids=["misnamed-field", "missing-field"],
)
def test_a_missing_or_misnamed_field_is_a_400_saying_what_to_send(server, files):
    response = _classify(server, files)
    assert response.status_code == 400
    assert "no files in field 'images'" in response.json()["error"]
    _good(server)


def test_a_get_is_a_405_in_json(server):
    response = httpx.get(f"{server}/classify", timeout=30)
    assert response.status_code == 405
    assert "use POST" in response.json()["error"]


def test_a_non_multipart_body_is_a_415(server):
    response = httpx.post(f"{server}/classify", json={"images": ["a.png"]}, timeout=30)
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["error"]


def test_a_url_instead_of_a_file_is_refused_and_never_fetched(server):
    hits = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write((SAMPLES / "sneaker.png").read_bytes())

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Recorder) as target:
        threading.Thread(target=target.serve_forever, daemon=True).start()
        link = f"http://127.0.0.1:{target.server_address[1]}/sneaker.png"
        response = _classify(server, [("images", (None, link))])  # a text part, no file
        target.shutdown()
    assert response.status_code == 400
    assert "not fetched" in response.json()["error"] and link in response.json()["error"]
    assert hits == []


async def _concurrently(url: str, uploads: list[list]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(*(client.post(f"{url}/classify", files=f) for f in uploads))


def test_a_bad_request_never_fails_a_good_one_sent_with_it(server):
    good = [("images", ("good.png", (SAMPLES / "sneaker.png").read_bytes()))]
    bad = [("images", ("fine.png", _noise_png(3))), ("images", ("broken.png", _truncated_png()))]
    responses = asyncio.run(_concurrently(server, [bad, good, bad, good]))
    assert [r.status_code for r in responses] == [400, 200, 400, 200]


def test_requests_that_arrive_together_share_one_model_call(server):
    calls = _metric(server, "wardrobe_batch_size_count")
    images = _metric(server, "wardrobe_batch_size_sum")
    uploads = [[("images", (f"{i}.png", _noise_png(i)))] for i in range(6)]
    responses = asyncio.run(_concurrently(server, uploads))
    assert all(r.status_code == 200 for r in responses)
    assert _metric(server, "wardrobe_batch_size_sum") - images == 6
    assert _metric(server, "wardrobe_batch_size_count") - calls < 6


def test_beyond_the_queue_bound_is_a_503_with_retry_after(server):
    # 12 at once against a bound of 6 requests in progress, each held by the 100 ms batching window.
    uploads = [[("images", (f"{i}.png", _noise_png(i)))] for i in range(12)]
    responses = asyncio.run(_concurrently(server, uploads))
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 503} and codes.count(200) >= 6
    for refused in (r for r in responses if r.status_code == 503):
        assert refused.headers["Retry-After"] == "1"
        assert (
            refused.json()["error"].startswith("server busy: ") and "waiting for the model" in refused.json()["error"]
        )
    _good(server)


def test_ready_and_metrics_show_batches_and_predictions(server, tiny_model_path):
    _good(server)
    ready = httpx.get(f"{server}/readyz", timeout=10)
    assert ready.status_code == 200
    tiny = load_model(tiny_model_path).info
    body = ready.json()
    assert body["ready"] is True and body["model_sha256"] == tiny.sha256  # never a path
    assert body["model_test_accuracy"] == float(tiny.metadata["test_accuracy"])
    assert body["warning"] and "below the shipped" in body["warning"]  # the tiny model is far below it
    text = httpx.get(f"{server}/metrics", timeout=10).text
    assert 'wardrobe_batch_size_bucket{le="1.0"}' in text
    assert re.search(r'^wardrobe_predictions_total\{label="[^"]+"\} [1-9]', text, re.M)


def test_every_answer_field_is_declared_in_the_schema_and_openapi(server):
    """The answers are built by contract/runtime.py; the schema BentoML's clients go by must name
    every field they carry (a client drops the rest), and nothing they lack."""
    from service.schema import Prediction, Predictions

    [answer] = _classify(server, [("images", ("sneaker.png", (SAMPLES / "sneaker.png").read_bytes()))]).json()
    assert set(answer) == set(Prediction.model_fields)
    Prediction.model_validate(answer, strict=True)
    schema = httpx.get(f"{server}/schema.json", timeout=10).json()
    [classify] = [api for api in schema["routes"] if api["route"] == "/classify"]
    assert classify["input"]["properties"]["images"]["items"]["type"] == "file"
    assert classify["output"]["type"] == "array"
    assert set(Predictions.model_json_schema()["$defs"]["Prediction"]["properties"]) == set(answer)
