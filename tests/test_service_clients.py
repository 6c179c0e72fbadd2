"""BentoML's own clients, schema and API explorer against the real service (`bentoml serve`, tiny model)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bentoml
import httpx
import pytest
from bentoml.exceptions import BentoMLException
from browser import CHROMIUM, chromium, watched_page
from wardrobe_server import running_server

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "service" / "samples"
IMAGES = [SAMPLES / "sneaker.png", SAMPLES / "trouser.png", SAMPLES / "ankle-boot.png"]


@pytest.fixture(scope="module")
def server(shared_server) -> str:
    """The session's server (tests/conftest.py): the tiny model, 200 KB per file, 1 MB per request."""
    return shared_server.url


def _curl(url: str, paths: list[Path]) -> tuple[int, bytes]:
    """What `curl -F images=@FILE ...` gets: status and body."""
    files = [arg for path in paths for arg in ("-F", f"images=@{path}")]
    out = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *files, f"{url}/classify"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    body, _, status = out.rpartition(b"\n")
    return int(status), body


@pytest.fixture
def curl_answer(server):
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    status, body = _curl(server, IMAGES)
    assert status == 200, body
    return json.loads(body)


def test_schema_declares_files_in_field_images_and_a_typed_answer(server):
    [route] = [r for r in httpx.get(f"{server}/schema.json", timeout=10).json()["routes"] if r["name"] == "classify"]
    images = route["input"]["properties"]["images"]
    assert route["input"]["required"] == ["images"]
    assert images["type"] == "array" and images["minItems"] == 1
    assert images["items"]["type"] == "file"
    assert route["output"]["type"] == "array"
    defs = route["output"]["$defs"]
    answer = defs[route["output"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(answer["required"]) == {"label", "class_id", "confidence", "top_k", "unsure", "model_sha256"}
    candidate = defs[answer["properties"]["top_k"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(candidate["properties"]) == {"label", "class_id", "probability"}


def test_openapi_describes_a_multipart_upload_and_the_answer_model(server):
    spec = httpx.get(f"{server}/docs.json", timeout=10).json()
    operation = spec["paths"]["/classify"]["post"]
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["images"]
    assert body["properties"]["images"]["items"] == {"type": "string", "format": "binary"}
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["type"] == "array"
    model = spec["components"]["schemas"][answer["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(model["required"]) == {"label", "class_id", "confidence", "top_k", "unsure", "model_sha256"}


def test_sync_client_gets_exactly_what_curl_gets(server, curl_answer):
    with bentoml.SyncHTTPClient(server, server_ready_timeout=30) as client:
        assert client.classify(images=IMAGES) == curl_answer
        assert client.classify(images=[str(IMAGES[0])]) == curl_answer[:1]  # a path as a string


def test_async_client_gets_exactly_what_curl_gets(server, curl_answer):
    async def classify():
        async with bentoml.AsyncHTTPClient(server, server_ready_timeout=30) as client:
            return await client.classify(images=IMAGES)

    assert asyncio.run(classify()) == curl_answer


@pytest.mark.slow
def test_a_service_composing_ours_with_depends_gets_typed_answers(server, curl_answer, tmp_path):
    log = tmp_path / "outfit.log"
    with running_server(log, service="tests.composing_service:Outfit", check_log=False,
                        WARDROBE_URL=server, PYTHONPATH=str(ROOT)) as outfit:  # fmt: skip
        files = [("images", (path.name, path.read_bytes())) for path in IMAGES]
        response = httpx.post(f"{outfit.url}/labels", files=files, timeout=30)
    assert response.status_code == 200, log.read_text()[-3000:]
    assert response.json() == [a["label"] for a in curl_answer]


def _call(server: str, client_kind: str, images: list) -> object:
    if client_kind == "sync":
        with bentoml.SyncHTTPClient(server, server_ready_timeout=30) as client:
            return client.classify(images=images)

    async def classify():
        async with bentoml.AsyncHTTPClient(server, server_ready_timeout=30) as client:
            return await client.classify(images=images)

    return asyncio.run(classify())


@pytest.mark.parametrize("client_kind", ["sync", "async"])
def test_an_oversized_file_through_a_client_is_a_413_naming_it(server, client_kind, tmp_path):
    big = tmp_path / "huge.png"
    big.write_bytes(IMAGES[0].read_bytes() + os.urandom(300_000))  # over the 200 kB per-file limit
    with pytest.raises(BentoMLException, match="'huge.png' is over the limit of 200,000 bytes") as caught:
        _call(server, client_kind, [IMAGES[0], big])
    assert caught.value.error_code == 413


@pytest.mark.parametrize("client_kind", ["sync", "async"])
def test_a_url_through_a_client_is_a_400_and_never_fetched(server, client_kind):
    hits = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(IMAGES[0].read_bytes())

        def log_message(self, *args):
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Recorder) as target:
        threading.Thread(target=target.serve_forever, daemon=True).start()
        link = f"http://127.0.0.1:{target.server_address[1]}/sneaker.png"
        try:
            with pytest.raises(BentoMLException, match="URLs are not fetched") as caught:
                _call(server, client_kind, [link])
        finally:
            target.shutdown()
    assert caught.value.error_code == 400
    assert link in str(caught.value)
    assert hits == []


@pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium not installed (make tools installs it)")
@pytest.mark.slow
def test_api_explorer_try_it_out_sends_a_file_and_shows_the_answer(server, curl_answer):
    with chromium() as browser, watched_page(browser) as (page, watch):
        page.goto(f"{server}/docs")
        operation = page.locator(".opblock-post", has=page.locator("[data-path='/classify']"))
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.get_by_role("button", name="Add string item").click()
        operation.locator("input[type=file]").set_input_files(str(IMAGES[0]))
        with page.expect_response(f"{server}/classify") as response:
            operation.get_by_role("button", name="Execute").click()
        assert response.value.status == 200
        shown = operation.locator(".live-responses-table .response-col_description pre").first
        shown.wait_for(timeout=30_000)
        assert json.loads(shown.inner_text()) == curl_answer[:1]
    # Nothing left this machine. (Console errors are not checked here: served from source, BentoML
    # describes the service with its default README, whose badge images the page's CSP blocks.)
    assert watch.non_local == []
