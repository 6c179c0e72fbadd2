"""`wardrobe report --wardrobe`: the "Your wardrobe" section and its gates, the promotion gate of a fine-tuned model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REPO, make_items
from test_report_cli import SMALL, centroid_model, make_args

from contract.runtime import load_model
from report import cli
from report.compute import ReportSettings
from training.wardrobe_data import WardrobeError, as_records, write_export

QUICK = ReportSettings(**{**SMALL, "limit": 100, "robustness_images": 20, "photo_images": 4},
                       baseline_model=None, ablation=None)  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory, fmnist) -> dict:
    """A wardrobe of 40 garments a person sorted; the 'new' model (the shipped CNN) says half of them
    were held out of its fine-tuning; the 'old' one is a weak nearest-centroid classifier."""
    root = tmp_path_factory.mktemp("wardrobe-report")
    items = make_items(fmnist, per_class=4)
    write_export(as_records(items), root / "wardrobe.zip")
    held = [int(i) for i in items.ids[::2]]
    proto = onnx.load(str(REPO / "models" / "cnn.onnx"))
    proto.metadata_props.add(key="wardrobe_held_out", value=json.dumps(held))
    onnx.save(proto, str(root / "new.onnx"))
    old = centroid_model(root / "old.onnx", fmnist.train_images[:1000], fmnist.train_labels[:1000], 0.8)
    return {"root": root, "items": items, "held": held, "new": root / "new.onnx", "old": old}


def test_wardrobe_section_measures_the_held_out_items_old_against_new(setup, capsys):
    out = setup["root"] / "report"
    args = make_args(setup["new"], out, compare=setup["old"], wardrobe=str(setup["root"] / "wardrobe.zip"),
                     fail_under=["wardrobe_gain=0"])  # fmt: skip
    assert cli.run_report(args, QUICK) == 0
    report = json.loads((out / "report.json").read_text())
    w = report["wardrobe"]

    items = setup["items"]
    keep = np.isin(items.ids, setup["held"])
    images = items.images[keep].astype(np.float32)[:, None] / 255
    labels = items.labels[keep]
    new = load_model(setup["new"], device="cpu").logits(images).argmax(1)
    old = load_model(setup["old"], device="cpu").logits(images).argmax(1)
    assert w["items"] == 20
    assert w["which"] == "the 20 of its 20 held-out items found in this wardrobe (not the export it was fine-tuned on)"
    assert w["accuracy"] == pytest.approx(np.mean(new == labels))
    assert w["old_accuracy"] == pytest.approx(np.mean(old == labels))
    assert w["gain"] == pytest.approx(w["accuracy"] - w["old_accuracy"])
    assert w["changed_count"] == int(np.sum(new != old))
    assert {row["id"] for row in w["changed"]} == {int(i) for i in np.array(items.ids)[keep][new != old]}
    assert w["mcnemar"]["a_only"] == int(np.sum((new == labels) & (old != labels)))
    assert w["mcnemar"]["b_only"] == int(np.sum((new != labels) & (old == labels)))
    assert sum(row["n"] for row in w["per_class"]) == 20
    assert report["gates"]["wardrobe_accuracy"] == w["accuracy"]
    html = (out / "report.html").read_text()
    assert "<h2>Your wardrobe</h2>" in html
    assert "your wardrobe: accuracy" in capsys.readouterr().out


def test_fail_under_refuses_a_model_that_got_worse_on_the_wardrobe(setup, capsys):
    # Swapped: the weak model is the candidate, the shipped one the model it would replace.
    args = make_args(setup["old"], setup["root"] / "worse", compare=setup["new"],
                     wardrobe=str(setup["root"] / "wardrobe.zip"), fail_under=["wardrobe_gain=0"])  # fmt: skip
    assert cli.run_report(args, QUICK) == cli.GATE_FAILED
    assert "gate failed: wardrobe_gain = -" in capsys.readouterr().err
    report = json.loads((setup["root"] / "worse" / "report.json").read_text())
    assert report["wardrobe"]["items"] == 40  # a model not fine-tuned here: every item a person labelled


def test_a_wardrobe_without_the_models_held_out_items_is_a_clear_error(setup, fmnist, tmp_path):
    other = make_items(fmnist, per_class=2)
    other = other.subset(np.flatnonzero(~np.isin(other.ids, setup["held"])))
    write_export(as_records(other), tmp_path / "other.zip")
    args = make_args(setup["new"], tmp_path / "r", wardrobe=str(tmp_path / "other.zip"))
    with pytest.raises(WardrobeError, match="none of the model's 20 held-out items is in this wardrobe"):
        cli.run_report(args, QUICK)
    assert not (tmp_path / "r").exists()


def test_wardrobe_gate_without_a_wardrobe_is_not_measured(setup, tmp_path, capsys):
    args = make_args(setup["new"], tmp_path / "r", fail_under=["wardrobe_accuracy=0.5"])
    assert cli.run_report(args, QUICK) == cli.GATE_FAILED
    assert "wardrobe_accuracy: not measured in this report" in capsys.readouterr().err
    assert not Path(tmp_path / "r" / "report.json").read_text().count('"wardrobe": {')
