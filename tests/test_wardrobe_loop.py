"""The whole loop on a small scale, as the README walks it: add photos → correct them → export →
fine-tune → report with "Your wardrobe" → publish and promote → the page shows the new model. Each step's
output is checked, not just its exit status. 150 photos: with a few dozen, whether the new model
beats the old on the held-out handful is a coin toss, and the canary rightly refuses a loser."""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import numpy as np
import onnx
import pytest
from test_report_cli import SMALL, make_args
from wardrobe_server import MODEL, ROOT, client, wardrobe_server

from benchmarks.unseen_style import unseen_style_set
from report.cli import run_report
from report.compute import ReportSettings
from training.fashion_mnist import CLASSES
from wardrobe.cli import main as wardrobe

TOKEN = "loop-token"
QUICK = ReportSettings(**{**SMALL, "limit": 200, "robustness_images": 20, "photo_images": 4},
                       baseline_model=None, ablation=None)  # fmt: skip


@pytest.mark.slow
def test_corrections_become_a_better_model_that_is_swapped_in(fmnist, tmp_path, monkeypatch, capsys):
    served = tmp_path / "model.onnx"
    shutil.copyfile(MODEL, served)
    idx = np.concatenate([np.nonzero(fmnist.test_labels == c)[0][:15] for c in range(10)])  # 15 garments a class
    photos = unseen_style_set(fmnist.test_images[idx], seed=0)
    with wardrobe_server(str(tmp_path / "w.db"), tmp_path / "server.log", token=TOKEN,
                         WARDROBE_MODEL=str(served)) as url:  # fmt: skip
        http = client(url, TOKEN)
        first_sha = http.get("/readyz").json()["model_sha256"]

        # 1. Add photos: each is classified and stored with the model that decided.
        files = [("images", (f"photo{i}.jpg", p, "image/jpeg")) for i, p in zip(idx, photos, strict=True)]
        added = [
            item
            for at in range(0, len(files), 50)
            for item in http.post("/wardrobe/items", files=files[at : at + 50]).json()
        ]
        assert len(added) == 150 and {a["model_sha256"] for a in added} == {first_sha}

        # 2. Correct them: the person puts every garment on its right shelf.
        for item, i in zip(added, idx, strict=True):
            patched = http.patch(f"/wardrobe/items/{item['id']}", json={"label": CLASSES[fmnist.test_labels[i]]})
            assert patched.json()["label_source"] == "person"
        assert http.get("/wardrobe/learning").json()["waiting"] == 150

        # 3. Export.
        export = http.get("/wardrobe/export")
        assert export.status_code == 200
        (tmp_path / "export.zip").write_bytes(export.content)
        sha = hashlib.sha256(export.content).hexdigest()

        # 4. Fine-tune on it (the recipe's epochs, a small replay), then export the run.
        code = wardrobe(["train", "--config", str(ROOT / "configs" / "finetune.toml"),
                         "--set", f"data.wardrobe={str(tmp_path / 'export.zip')!r}",
                         "--set", f"out_dir={str(tmp_path / 'runs')!r}",
                         "--set", "finetune.replay=3000", "--set", "threads=1"])  # fmt: skip
        assert code == 0
        (run_dir,) = (tmp_path / "runs").iterdir()
        result = json.loads((run_dir / "finetune.json").read_text())
        assert result["wardrobe"]["sha256"] == sha and result["wardrobe"]["items"] == 150
        assert result["held_out"]["after"]["n"] == 40
        assert wardrobe(["export", str(run_dir), "--out", str(tmp_path / "new.onnx")]) == 0
        metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "new.onnx")).metadata_props}
        assert metadata["wardrobe_sha256"] == sha and len(json.loads(metadata["wardrobe_held_out"])) == 40

        # 5. Report: the "Your wardrobe" section compares it with the served model on the held-out items.
        # (what `wardrobe report --model new.onnx --compare model.onnx --wardrobe export.zip` runs, on a
        # smaller Fashion-MNIST sample than the shipped report's)
        args = make_args(tmp_path / "new.onnx", tmp_path / "report", compare=served,
                         wardrobe=str(tmp_path / "export.zip"), fail_under=["wardrobe_gain=-1"])  # fmt: skip
        assert run_report(args, QUICK) == 0
        report = json.loads((tmp_path / "report" / "report.json").read_text())
        assert report["wardrobe"]["items"] == 40
        assert report["wardrobe"]["accuracy"] == pytest.approx(result["held_out"]["after"]["accuracy"])
        assert report["wardrobe"]["old_accuracy"] == pytest.approx(result["held_out"]["before"]["accuracy"])

        # 6. Publish and promote through the registry (the wardrobe's database): the canary measures on the
        # same held-out items; every worker follows, and the page then shows the new model.
        monkeypatch.setenv("WARDROBE_DB", str(tmp_path / "w.db"))
        assert wardrobe(["export", str(run_dir), "--out", str(tmp_path / "new.onnx"), "--publish"]) == 0
        new_sha = hashlib.sha256((tmp_path / "new.onnx").read_bytes()).hexdigest()
        assert f"published: {new_sha}" in capsys.readouterr().out
        assert wardrobe(["models", "promote", new_sha]) == 0
        assert "on the 40 of its 40 held-out items" in capsys.readouterr().out
        deadline = time.monotonic() + 30
        while http.get("/readyz").json()["model_sha256"] != new_sha and time.monotonic() < deadline:
            time.sleep(0.05)
        assert new_sha != first_sha and http.get("/readyz").json()["model_sha256"] == new_sha
        assert http.get("/wardrobe/shelves").json()["model"]["sha256"] == new_sha
        assert http.get("/wardrobe/learning").json()["waiting"] == 0  # it learned every correction
        history = {m["sha256"]: m for m in http.get("/wardrobe/models").json()["models"]}
        assert history[new_sha]["state"] == "champion" and history[first_sha]["state"] == "previous"
        assert history[new_sha]["canary"]["items"] == 40
