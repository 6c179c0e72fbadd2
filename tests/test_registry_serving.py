"""The model registry across replicas: two `wardrobe serve`-style servers (2 workers each) on one database,
PostgreSQL (LISTEN/NOTIFY) and SQLite (polling). A promotion through one reaches all four workers under
load with no failed request, and so does a rollback; the admin endpoints have their own credential and
never take a server path; the canary refuses a worse model on the wardrobe's held-out items."""

from __future__ import annotations

import io
import time
from contextlib import ExitStack

import numpy as np
import pytest
from PIL import Image
from wardrobe_server import MODEL, client, wardrobe_server

from benchmarks.registry_follow import Load, variant
from contract.runtime import load_model
from contract.store.registry import Registry

ADMIN = "admin-secret"
SETTLE_S = 30
"""How long the test waits for every worker to follow (a deadline for a hung test, not a measurement)."""


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def replicas(request, tmp_path_factory):
    """(database setting, [url of replica A, url of replica B]): both started once per backend."""
    tmp = tmp_path_factory.mktemp(f"replicas-{request.param}")
    if request.param == "sqlite":
        db = str(tmp / "wardrobe.db")
    else:
        db = request.getfixturevalue("postgres").create_database(f"replicas{id(tmp) % 10**6}")
    with ExitStack() as stack:
        urls = [
            stack.enter_context(wardrobe_server(db, tmp / f"replica{i}.log", workers=2, WARDROBE_ADMIN_TOKEN=ADMIN))
            for i in range(2)
        ]
        yield db, urls


def _all_workers_serve(db: str, sha: str) -> float:
    """Wait until four workers in two replicas have confirmed `sha` in the registry; the monotonic time then."""
    deadline = time.monotonic() + SETTLE_S
    with Registry.open(db, create=False) as registry:
        while time.monotonic() < deadline:
            serving = [c for c in registry.confirmations() if c.model_sha256 == sha]
            if len(serving) >= 4 and len({c.replica for c in serving}) == 2:
                return time.monotonic()
            time.sleep(0.02)
    raise AssertionError(f"not every worker follows {sha}: {registry.confirmations()}")


def test_admin_has_its_own_credential_and_never_takes_a_server_path(replicas):
    _, (url, _) = replicas
    assert client(url).get("/admin/models").status_code == 401
    wrong = client(url, "not-it").post("/admin/models/rollback")
    assert wrong.status_code == 401 and "WARDROBE_ADMIN_TOKEN" in wrong.json()["error"]
    admin = client(url, ADMIN)
    gone = admin.post("/admin/reload", json={"model": "/etc/hostname"})
    assert gone.status_code == 410 and "never come from a server path" in gone.json()["error"]
    broken = admin.post("/admin/models", content=b"not a model")
    assert broken.status_code == 422 and "breaks the model contract" in broken.json()["error"]
    assert admin.post("/admin/models/0123456789abcdef/promote").status_code == 404
    assert admin.get("/admin/models/rollback").status_code == 405
    for body, message in [
        ("not json", "the body must be a JSON object"), ('{"force": true}', "'force' needs a 'reason'"),
        ('{"force": "maybe", "reason": "x"}', "'force' must be true or false, got 'maybe'"),
        ('{"reason": "x"}', "'reason' goes with 'force'"), ('{"forse": true}', "unknown field 'forse'"),
    ]:  # fmt: skip
        wrong = admin.post("/admin/models/0123456789abcdef/promote", content=body)
        assert wrong.status_code == 400 and message in wrong.json()["error"], (body, wrong.text)
    assert "needs a 'reason'" in admin.post("/admin/models/0123456789abcdef/promote?force=true").json()["error"]
    ready = client(url).get("/readyz").json()
    assert set(ready) == {"ready", "model_sha256", "model_test_accuracy", "shipped_test_accuracy", "warning"}
    assert len(ready["model_sha256"]) == 64 and ready["warning"] is None  # the shipped CNN
    recorded = float(load_model(MODEL, device="cpu").info.metadata["test_accuracy"])
    assert ready["model_test_accuracy"] == recorded and ready["shipped_test_accuracy"] > 0.85


def test_canary_refuses_a_worse_model_on_the_wardrobes_held_out_items(replicas, fmnist, tiny_model_path):
    _, (url, other) = replicas
    http, admin = client(url), client(url, ADMIN)
    champion = http.get("/readyz").json()["model_sha256"]
    # A wardrobe a person has sorted: 30 test garments, each corrected to its true label.
    files = [("images", (f"g{i}.png", _png(fmnist.test_images[i]), "image/png")) for i in range(30)]
    items = http.post("/wardrobe/items", files=files).json()
    classes = load_model(MODEL, device="cpu").classes
    for item, i in zip(items, range(30), strict=True):
        assert http.patch(f"/wardrobe/items/{item['id']}", json={"label": classes[fmnist.test_labels[i]]}).is_success
    assert {i["model_sha256"] for i in items} == {champion}

    published = admin.post("/admin/models", content=tiny_model_path.read_bytes())
    assert published.status_code == 201, published.text
    sha = published.json()["model"]["sha256"]
    refused = admin.post(f"/admin/models/{sha}/promote")
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert "refused: the canary: candidate" in body["error"] and "95% Wilson interval" in body["error"]
    assert f"more than 1 point below the champion {champion[:12]}'s" in body["error"]  # its recorded figure, too
    assert body["canary"]["items"] == 30 and body["canary"]["candidate_accuracy"] < body["canary"]["champion_accuracy"]
    history = client(other).get("/wardrobe/models").json()  # the user's view, from the other replica
    assert history["champion"] == champion
    assert {m["sha256"]: m["state"] for m in history["models"]}[sha] == "refused"
    assert client(other).get("/readyz").json()["model_sha256"] == champion

    # Forced, with a reason: it serves, recorded with who and why, and /readyz warns; then rolled back.
    forced = admin.post(f"/admin/models/{sha}/promote", json={"force": True, "reason": "a test of the override"})
    assert forced.status_code == 200, forced.text
    record = forced.json()["model"]
    assert record["decided_by"].startswith("admin over HTTP") and "a test of the override" in record["note"]
    assert forced.json()["canary"]["forced"]["reason"] == "a test of the override"
    ready = http.get("/readyz").json()
    assert ready["model_sha256"] == sha and "points below the shipped" in ready["warning"]
    assert http.get("/wardrobe/learning").json()["warning"] == ready["warning"]
    back = admin.post("/admin/models/rollback")
    assert back.status_code == 200 and back.json()["model"]["sha256"] == champion, back.text


def test_promotion_and_rollback_reach_every_worker_of_both_replicas_under_load(replicas, tmp_path):
    db, (url, other) = replicas
    admin = client(url, ADMIN)
    first = client(url).get("/readyz").json()["model_sha256"]
    candidate = variant(MODEL, tmp_path / "candidate.onnx", note=f"stand-in {tmp_path.name}")
    sha = admin.post("/admin/models", content=candidate.read_bytes()).json()["model"]["sha256"]

    with Load([url, other]) as load:
        load.wait_for(20)  # the clients are under way before the promotion
        # What is under test is how the change reaches every worker (the guard is tested above): forced, so
        # that it does not hang on the wardrobe items another test labelled.
        promoted = admin.post(f"/admin/models/{sha}/promote", json={"force": True, "reason": "the same network"})
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["confirmed"]["this_replica"] == 2  # the answer waited for its own workers
        settled = _all_workers_serve(db, sha)
        load.wait_for(20)
    assert load.failures() == []
    assert {a[2] for a in load.answers if a[0] > settled} == {sha}
    assert {a[2] for a in load.answers} == {first, sha}
    assert client(other).get("/readyz").json()["model_sha256"] == sha

    with Load([url, other]) as load:
        back = client(other, ADMIN).post("/admin/models/rollback")  # through the other replica this time
        assert back.status_code == 200 and back.json()["model"]["sha256"] == first, back.text
        settled = _all_workers_serve(db, first)
        load.wait_for(20)
    assert load.failures() == []
    assert {a[2] for a in load.answers if a[0] > settled} == {first}
    with Registry.open(db, create=False) as registry:
        states = {r.sha256: r.state for r in registry.records()}
        promoted_at = registry.get(first).promoted_at
        lags = [(c.confirmed_at - promoted_at).total_seconds() for c in registry.confirmations()]
    assert states[first] == "champion" and states[sha] == "candidate"
    print(f"rollback reached all {len(lags)} workers {max(lags):.3f} s after it committed")
