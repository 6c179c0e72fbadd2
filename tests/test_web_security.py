"""Other web sites stay out: DNS rebinding, cross-site writes, sniffing; and no 500 for odd ids or bodies.

Against the real `bentoml serve` on a loopback address, as a person runs it: a
page on evil.example that rebinds its name to 127.0.0.1 sends `Host: evil.example`;
a cross-site form or fetch sends `Origin: http://evil.example`.
"""

from __future__ import annotations

import httpx
import pytest
from wardrobe_server import SAMPLES, client, wardrobe_server

from service.access import names_this_machine, same_origin, split_host
from service.headers import DOCS_POLICY, PAGE_POLICY

SNEAKER = ("images", ("sneaker.png", (SAMPLES / "sneaker.png").read_bytes(), "image/png"))
TOKEN = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("web-security")
    with wardrobe_server(str(directory / "w.db"), directory / "server.log",
                         WARDROBE_ALLOWED_HOSTS="wardrobe.test") as url:  # fmt: skip
        yield url


def _port(url: str) -> int:
    return httpx.URL(url).port


def test_a_rebinding_host_is_refused_and_names_of_this_machine_are_answered(server):
    port = _port(server)
    with client(server) as http:
        item = http.post("/wardrobe/items", files=[SNEAKER]).json()[0]
        for path in ["/wardrobe/items", "/wardrobe/export", f"/wardrobe/items/{item['id']}", "/", "/classify"]:
            for host in ["evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example"]:
                refused = http.get(path, headers={"Host": host})
                assert refused.status_code == 403, (path, host, refused.text)
                assert "does not name this machine" in refused.json()["error"]
        deleted = http.delete(f"/wardrobe/items/{item['id']}", headers={"Host": "evil.example"})
        assert deleted.status_code == 403
        for host in ["localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "wardrobe.test",
                     f"WARDROBE.test:{port}"]:  # fmt: skip
            assert http.get("/wardrobe/items", headers={"Host": host}).status_code == 200, host
        assert http.get(f"/wardrobe/items/{item['id']}").status_code == 200  # the refused DELETE did nothing


def test_a_cross_site_write_is_refused_and_a_same_origin_one_is_not(server):
    port = _port(server)
    with client(server) as http:
        before = len(http.get("/wardrobe/items").json()["items"])
        for origin in ["http://evil.example", f"http://evil.example:{port}", "null", f"http://localhost:{port + 1}"]:
            refused = http.post("/wardrobe/items", files=[SNEAKER], headers={"Origin": origin})
            assert refused.status_code == 403, (origin, refused.text)
            assert "from another site refused" in refused.json()["error"]
            assert http.post("/classify", files=[SNEAKER], headers={"Origin": origin}).status_code == 403
        assert len(http.get("/wardrobe/items").json()["items"]) == before
        item = http.post("/wardrobe/items", files=[SNEAKER], headers={"Origin": f"http://127.0.0.1:{port}"})
        assert item.status_code == 201, item.text
        item_id = item.json()[0]["id"]
        for method, body in [("PATCH", {"label": "Bag"}), ("DELETE", None)]:
            refused = http.request(method, f"/wardrobe/items/{item_id}", json=body,
                                   headers={"Origin": "https://evil.example"})  # fmt: skip
            assert refused.status_code == 403, method
        assert http.get(f"/wardrobe/items/{item_id}").json()["label"] == "Sneaker"
        # A GET may come from anywhere (a link); the browser keeps its answer from the other site.
        assert http.get("/wardrobe/items", headers={"Origin": "http://evil.example"}).status_code == 200
        same = http.patch(f"/wardrobe/items/{item_id}", json={"label": "Bag"},
                          headers={"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"})  # fmt: skip
        assert same.status_code == 200, same.text


def test_pages_and_static_files_carry_the_policy_and_every_answer_nosniff(server):
    expected = {"/": PAGE_POLICY, "/static/index.html": PAGE_POLICY, "/docs": DOCS_POLICY,
                "/static/docs.html": DOCS_POLICY, "/static/wardrobe.js": PAGE_POLICY}  # fmt: skip
    with client(server) as http:
        for path, policy in expected.items():
            response = http.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-security-policy"] == policy, path
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["referrer-policy"] == "no-referrer", path
        answers = [http.get("/wardrobe/items"), http.get("/wardrobe/nothing"), http.get("/livez"),
                   http.post("/classify", files=[SNEAKER]),
                   http.get("/", headers={"Host": "evil.example"})]  # fmt: skip
        for response in answers:
            assert response.headers["x-content-type-options"] == "nosniff", response.url


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/wardrobe/items/²", 404), ("GET", "/wardrobe/items/١٢", 404), ("DELETE", "/wardrobe/items/²", 404),
     ("GET", "/wardrobe/items/99999999999999999999/thumbnail", 404),
     ("GET", "/wardrobe/items?before=12345678901234567890", 400), ("GET", "/wardrobe/items?before=²", 400),
     ("GET", "/wardrobe/items?limit=³", 400), ("GET", "/wardrobe/thumbnails?ids=1,²", 400),
     ("GET", "/wardrobe/thumbnails?ids=12345678901234567890", 400)],
)  # fmt: skip
def test_odd_numbers_in_paths_and_queries_get_a_4xx_naming_them(server, method, path, status):
    with client(server) as http:
        response = http.request(method, path)
    assert response.status_code == status, response.text
    assert response.json()["error"]


def test_a_deeply_nested_json_body_gets_400(server):
    with client(server) as http:
        item_id = http.post("/wardrobe/items", files=[SNEAKER]).json()[0]["id"]
        deep = b"[" * 5000 + b"]" * 5000
        response = http.patch(f"/wardrobe/items/{item_id}", content=deep, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert "nested too deep" in response.json()["error"]


def test_with_a_token_a_cross_site_write_is_still_refused_and_any_host_answered(tmp_path):
    db, log = str(tmp_path / "w.db"), tmp_path / "server.log"
    with wardrobe_server(db, log, token=TOKEN) as url, client(url, TOKEN) as http:
        refused = http.post("/wardrobe/items", files=[SNEAKER], headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403, refused.text
        assert http.get("/wardrobe/items").json()["items"] == []
        # Behind an ingress the Host is the public name: with a token, no Host is refused.
        public = {"Host": "wardrobe.example.com", "Origin": "https://wardrobe.example.com"}
        assert http.post("/wardrobe/items", files=[SNEAKER], headers=public).status_code == 201


@pytest.mark.parametrize(
    ("host", "expected"),
    [("localhost", ("localhost", None)), ("LocalHost:3000", ("localhost", 3000)), ("[::1]:80", ("::1", 80)),
     ("[::1]", ("::1", None)), ("127.0.0.1:", ("127.0.0.1", None)), ("::1", ("", None)), ("a:b", ("", None)),
     ("[::1]x", ("", None)), ("host:99999", ("", None)), ("example.com.", ("example.com", None))],
)  # fmt: skip
def test_host_values_are_split_into_name_and_port(host, expected):
    assert split_host(host) == expected


@pytest.mark.parametrize(
    ("host", "ours"),
    [("localhost:3000", True), ("127.0.0.1", True), ("127.1.2.3:8", True), ("[::1]:3000", True),
     ("extra.test", True), ("evil.example", False), ("localhost.evil.example", False), ("", False),
     ("0.0.0.0:3000", False), ("10.0.0.1", False), ("[::]:3000", False)],
)  # fmt: skip
def test_only_names_of_this_machine_count(host, ours):
    assert names_this_machine(host, frozenset({"extra.test"})) is ours


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [("http://localhost:3000", "localhost:3000", True), ("https://w.example", "w.example", True),
     ("http://w.example", "w.example:80", True), ("https://w.example", "w.example:80", False),
     ("http://localhost:3001", "localhost:3000", False), ("null", "localhost:3000", False),
     ("http://evil.example", "localhost", False), ("http://[::1]:3000", "[::1]:3000", True),
     ("http://localhost:x", "localhost", False), ("file://", "localhost", False), ("", "localhost", False)],
)  # fmt: skip
def test_same_origin_compares_name_and_port(origin, host, same):
    assert same_origin(origin, host) is same
