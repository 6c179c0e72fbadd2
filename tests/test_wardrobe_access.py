"""Who may use the wardrobe: the token, the loopback rule, and items that outlive a restart."""

from __future__ import annotations

import socket

import httpx
import pytest
from wardrobe_server import SAMPLES, client, wardrobe_server

from contract.store import Store
from service.access import is_loopback, listening_host

TOKEN = "correct horse battery staple"
SNEAKER = ("images", ("sneaker.png", (SAMPLES / "sneaker.png").read_bytes(), "image/png"))
OPEN = ["/", "/docs", "/livez", "/readyz", "/static/wardrobe.js"]


def test_with_a_token_every_wardrobe_endpoint_wants_it_and_items_survive_a_restart(tmp_path):
    db, log = str(tmp_path / "wardrobe.db"), tmp_path / "server.log"
    with wardrobe_server(db, log, token=TOKEN) as url:
        with client(url, TOKEN) as http:
            added = http.post("/wardrobe/items", files=[SNEAKER, SNEAKER]).json()
            http.patch(f"/wardrobe/items/{added[0]['id']}", json={"label": "Sandal"})
            before = http.get("/wardrobe/items").json()["items"]
        for headers, what in [({}, "no bearer token"), ({"Authorization": "Bearer nope"}, "a wrong token"),
                              ({"Authorization": f"Basic {TOKEN}"}, "no bearer token")]:  # fmt: skip
            for method, path in [("GET", "/wardrobe/items"), ("GET", f"/wardrobe/items/{added[0]['id']}"),
                                 ("DELETE", f"/wardrobe/items/{added[0]['id']}"), ("GET", "/wardrobe/export"),
                                 ("GET", "/wardrobe/shelves"), ("GET", f"/wardrobe/items/{added[0]['id']}/thumbnail"),
                                 ("PATCH", f"/wardrobe/items/{added[0]['id']}")]:  # fmt: skip
                response = httpx.request(method, url + path, headers=headers, json={"label": "Bag"}, timeout=30)
                assert response.status_code == 401, (method, path, response.text)
                assert what in response.json()["error"] and response.headers["www-authenticate"].startswith("Bearer")
            refused = httpx.post(url + "/wardrobe/items", headers=headers, files=[SNEAKER], timeout=30)
            assert refused.status_code == 401
        for path in OPEN:
            assert httpx.get(url + path, timeout=30).status_code == 200, path
        assert httpx.post(url + "/classify", files=[SNEAKER], timeout=30).status_code == 200
    with wardrobe_server(db, log, token=TOKEN) as url, client(url, TOKEN) as http:
        assert http.get("/wardrobe/items").json()["items"] == before
        assert [i["shelf"] for i in before] == ["Sneaker", "Sandal"]


def test_without_a_token_a_non_loopback_bind_refuses_the_wardrobe_and_says_why(tmp_path):
    log = tmp_path / "server.log"
    with wardrobe_server(str(tmp_path / "w.db"), log, host="0.0.0.0") as url:
        response = httpx.get(url + "/wardrobe/items", timeout=30)
        assert response.status_code == 403
        assert "listens on 0.0.0.0, not a loopback address" in response.json()["error"]
        assert "set WARDROBE_TOKEN" in response.json()["error"]
        assert httpx.post(url + "/wardrobe/items", files=[SNEAKER], timeout=30).status_code == 403
        for path in OPEN:
            assert httpx.get(url + path, timeout=30).status_code == 200, path
        assert httpx.post(url + "/classify", files=[SNEAKER], timeout=30).status_code == 200
    text = log.read_text()
    assert "WARDROBE_TOKEN is not set and the server listens on 0.0.0.0" in text
    with Store.open(str(tmp_path / "w.db"), create=False) as store:  # it holds the model registry, no item
        assert store.counts() == {}


def test_the_listening_address_is_read_from_the_workers_socket():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listening_host(["worker.py", "service:Svc", "--fd", str(listener.fileno())]) == "127.0.0.1"
    assert listening_host(["worker.py"]) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("::", False), ("10.0.0.5", False), ("testserver", False), (None, False)],
)  # fmt: skip
def test_only_loopback_addresses_count_as_loopback(host, loopback):
    assert is_loopback(host) is loopback
