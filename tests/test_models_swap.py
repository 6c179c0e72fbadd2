"""Swapping the served model without downtime: canary, contract check, rollback, file watch, under load."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from PIL import Image
from wardrobe_server import MODEL, SAMPLES, client, wardrobe_server

from contract.runtime import load_model
from service.models_swap import run_canary

TOKEN = "swap-token"


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def variant(src: Path, dst: Path, note: str) -> Path:
    """The same network under other bytes (one more metadata entry): same answers, another SHA-256."""
    proto = onnx.load(str(src))
    proto.metadata_props.add(key="note", value=note)
    onnx.save(proto, str(dst))
    return dst


def test_canary_refuses_a_worse_model_and_passes_an_equal_one(fmnist, tiny_model_path):
    shipped, tiny = load_model(MODEL, device="cpu"), load_model(tiny_model_path, device="cpu")
    images = fmnist.test_images[:200].astype(np.float32)[:, None] / 255
    labels = [shipped.classes[c] for c in fmnist.test_labels[:200]]
    worse = run_canary(shipped, tiny, (images, labels), max_drop=0.005)
    assert not worse.passed and worse.items == 200
    assert worse.candidate < worse.current - 0.005
    assert "more than 0.5 points below the current model" in worse.note
    assert run_canary(shipped, shipped, (images, labels), max_drop=0.005).passed
    nothing = run_canary(shipped, tiny, None, max_drop=0.005)
    assert nothing.passed and "only the contract was checked" in nothing.note


class Load:
    """Clients sending /classify requests in a loop until stopped; every status is kept."""

    def __init__(self, url: str, clients: int = 4):
        self.url, self.statuses, self.stop = url, [], threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        files = [("images", ("sneaker.png", (SAMPLES / "sneaker.png").read_bytes(), "image/png"))]
        with client(self.url) as c:
            while not self.stop.is_set():
                try:
                    self.statuses.append(c.post("/classify", files=files).status_code)
                except Exception as exc:  # a dropped connection counts as a failure
                    self.statuses.append(repr(exc))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def failures(self) -> list:
        return [s for s in self.statuses if s != 200]


def _wait_for_sha(url: str, sha: str, timeout_s: float = 120) -> None:
    """Until every worker answers /readyz with `sha` (ten answers in a row, each on a new connection)."""
    deadline, streak = time.time() + timeout_s, 0
    while time.time() < deadline:
        body = httpx.get(f"{url}/readyz", timeout=30).json()
        streak = streak + 1 if body.get("model_sha256") == sha else 0
        if streak >= 10:
            return
        time.sleep(0.2)
    raise AssertionError(f"/readyz never settled on {sha}; last answer {body}")


@pytest.mark.slow
def test_reload_refuse_rollback_and_file_swap_under_load(fmnist, tiny_model_path, tmp_path):
    served = tmp_path / "served.onnx"
    shutil.copyfile(MODEL, served)
    original = served.read_bytes()
    candidate = variant(MODEL, tmp_path / "candidate.onnx", "fine-tuned stand-in")
    db = str(tmp_path / "wardrobe.db")
    with wardrobe_server(db, tmp_path / "server.log", token=TOKEN, workers=2, WARDROBE_MODEL=str(served)) as url:
        http = client(url, TOKEN)
        first_sha = http.get("/readyz").json()["model_sha256"]
        assert first_sha == load_model(served, device="cpu").info.sha256

        # Only with the token.
        assert client(url).post("/admin/reload", json={"model": str(candidate)}).status_code == 401
        assert client(url, "wrong").post("/admin/rollback").status_code == 401

        # A wardrobe a person has sorted: 30 test garments, each corrected to its true label.
        idx = np.arange(30)
        files = [("images", (f"g{i}.png", _png(fmnist.test_images[i]), "image/png")) for i in idx]
        items = http.post("/wardrobe/items", files=files).json()
        for item, i in zip(items, idx, strict=True):
            label = load_model(served, device="cpu").classes[fmnist.test_labels[i]]
            assert http.patch(f"/wardrobe/items/{item['id']}", json={"label": label}).status_code == 200
        assert {i["model_sha256"] for i in items} == {first_sha}
        learning = http.get("/wardrobe/learning").json()
        assert (learning["waiting"], learning["model_sha256"]) == (30, first_sha)
        assert "wardrobe train --config configs/finetune.toml --set data.wardrobe=" in learning["commands"][0]

        # A model much worse on those items is refused; the old one keeps serving and stays on disk.
        refused = http.post("/admin/reload", json={"model": str(tiny_model_path)})
        assert refused.status_code == 409, refused.text
        assert "refused by the canary" in refused.json()["error"]
        assert refused.json()["model_sha256"] == first_sha
        assert served.read_bytes() == original
        # A file that is not a model breaks the contract.
        (tmp_path / "notes.onnx").write_text("not a model")
        broken = http.post("/admin/reload", json={"model": str(tmp_path / "notes.onnx")})
        assert broken.status_code == 422 and "breaks the model contract" in broken.json()["error"]

        # An equally good model is installed while clients keep classifying: none of them fails.
        with Load(url) as load:
            time.sleep(1)
            swapped = http.post("/admin/reload", json={"model": str(candidate)})
            new_sha = swapped.json()["model_sha256"]
            _wait_for_sha(url, new_sha)
            time.sleep(1)
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["canary"]["items"] == 30 and swapped.json()["canary"]["passed"]
        assert len(load.statuses) > 20 and load.failures() == []
        assert served.read_bytes() == candidate.read_bytes()
        assert (tmp_path / "served.previous.onnx").read_bytes() == original
        served_lines = [line for line in http.get("/metrics").text.splitlines() if line.startswith("wardrobe_model{")]
        assert any(f'sha256="{new_sha}"' in line and line.endswith(" 1.0") for line in served_lines), served_lines
        # Items classified from now on say which model decided them.
        later = http.post("/wardrobe/items", files=files[:1]).json()
        assert later[0]["model_sha256"] == new_sha

        # Rollback puts the previous model back, the same way.
        with Load(url) as load:
            back = http.post("/admin/rollback")
            _wait_for_sha(url, first_sha)
        assert back.status_code == 200 and back.json()["model_sha256"] == first_sha, back.text
        assert load.failures() == [] and served.read_bytes() == original

        # Replacing the served file atomically is a reload too (every worker polls it).
        third = variant(MODEL, tmp_path / "third.onnx", "copied in place")
        with Load(url) as load:
            os.replace(third, served)
            third_sha = load_model(served, device="cpu").info.sha256
            _wait_for_sha(url, third_sha)
        assert load.failures() == []


def test_learning_counts_waiting_corrections_and_samples_confident_unchecked_items(fmnist, tmp_path):
    import random
    from datetime import UTC, datetime, timedelta

    from contract.store import NewItem, Store
    from service.learning import commands, learning_summary

    def new(i: int, unsure: bool) -> NewItem:
        return NewItem(filename=f"{i}.png", thumbnail=b"", thumbnail_type="image/png",
                       model_input=fmnist.test_images[i],
                       predicted_label="Bag", confidence=0.4 if unsure else 0.97, top_k=[], unsure=unsure,
                       model_sha256="ab" * 32)  # fmt: skip

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with Store.open(str(tmp_path / "w.db")) as store:
        items = store.add([new(i, unsure=i >= 11) for i in range(13)])  # 11 confident, 2 unsure
        for item in items[:5]:
            store.correct(item.id, "Coat", now=start)
        summary = learning_summary(store, {}, random.Random(0))
        assert (summary["corrected"], summary["waiting"], summary["fine_tuned"]) == (5, 5, False)
        assert len(summary["audit"]) == 6
        assert set(summary["audit"]) <= {i.id for i in items[5:11]}  # unchecked and confident only

        # A fine-tuned model exported after those corrections has learned them; a later one waits.
        tuned = {
            "wardrobe_sha256": "cd" * 32,
            "exported_at": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        store.correct(items[6].id, "Bag", now=start + timedelta(hours=2))
        summary = learning_summary(store, tuned, random.Random(0))
        assert (summary["corrected"], summary["waiting"], summary["fine_tuned"]) == (6, 1, True)
        assert items[6].id not in summary["audit"]
    assert commands("sqlite:////data/w.db")[0] == (
        "wardrobe train --config configs/finetune.toml --set data.wardrobe='sqlite:////data/w.db'"
    )


def _switch(path: Path, **kw):
    from service.batching import Batcher
    from service.models_swap import ModelSwitch

    def batcher(classifier):
        return Batcher(classifier.probabilities, max_batch_size=8, max_latency_s=0)

    return ModelSwitch(path, load=lambda p: load_model(p, device="cpu"), make_batcher=batcher, **kw)


def test_a_request_in_flight_finishes_on_the_model_it_started_with(tiny_model_path, fmnist, tmp_path):
    import asyncio

    served = tmp_path / "served.onnx"
    shutil.copyfile(tiny_model_path, served)
    candidate = variant(tiny_model_path, tmp_path / "candidate.onnx", "next")
    images = fmnist.test_images[:4].astype(np.float32)[:, None] / 255

    async def scenario():
        switch = _switch(served, grace_s=0.1)
        old = switch.current
        gate = threading.Event()
        original = old.batcher.infer
        old.batcher.infer = lambda x: (gate.wait(30), original(x))[1]  # the old model is mid-batch
        in_flight = asyncio.create_task(old.submit(images))  # a request that took the old model
        await asyncio.sleep(0.05)
        result = await switch.reload(candidate)
        assert switch.current is not old and old.in_flight == 1  # swapped while the request waits
        gate.set()
        answer = await in_flight
        await asyncio.sleep(0.3)
        return result, answer, old

    result, answer, old = asyncio.run(scenario())
    assert result["result"] == "swapped" and result["previous_sha256"] == old.sha256
    assert answer.shape == (4, 10)
    assert (tmp_path / "served.previous.onnx").read_bytes() == tiny_model_path.read_bytes()
    assert served.read_bytes() == candidate.read_bytes()


def test_a_shipped_model_is_never_overwritten(tiny_model_path, tmp_path):
    import asyncio

    from service.models_swap import SwapRefused

    candidate = variant(tiny_model_path, tmp_path / "candidate.onnx", "next")

    async def scenario():
        switch = _switch(tiny_model_path, installable=False)
        with pytest.raises(SwapRefused, match="a reload never overwrites; set WARDROBE_MODEL"):
            await switch.reload(candidate)
        with pytest.raises(SwapRefused, match="nothing to roll back to"):
            await switch.rollback()

    before = tiny_model_path.read_bytes()
    asyncio.run(scenario())
    assert tiny_model_path.read_bytes() == before
    assert not tiny_model_path.with_name("tiny.previous.onnx").exists()
