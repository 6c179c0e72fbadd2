"""contract/split.py: the validation split a model records, drawn the same way everywhere, without PyTorch."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contract import metadata
from contract.runtime import load_model
from contract.split import stratified_split

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "models").glob("*.onnx"))
SHIPPED_SPLIT_SHA256 = "f90033647fd24246d9c49cd3224be44bb92aa05cd9eb69720a06ed2df93a62ca"
"""`Split.checksum` of val_size 5000, seed 0 as training/data.py drew it before the split moved to
the contract (2026-12-07): the split every shipped model was chosen on."""


def test_split_is_deterministic_for_a_seed(fmnist):
    a = stratified_split(fmnist.train_labels, 5000, seed=3)
    b = stratified_split(fmnist.train_labels, 5000, seed=3)
    c = stratified_split(fmnist.train_labels, 5000, seed=4)
    assert a.checksum == b.checksum
    assert np.array_equal(a.val_indices, b.val_indices)
    assert a.checksum != c.checksum


def test_split_is_stratified_disjoint_and_complete(fmnist):
    split = stratified_split(fmnist.train_labels, 5000, seed=0)
    assert len(split.train_indices) == 55000 and len(split.val_indices) == 5000
    assert not set(split.train_indices) & set(split.val_indices)
    assert np.array_equal(np.sort(np.concatenate([split.train_indices, split.val_indices])), np.arange(60000))
    for indices, size in ((split.val_indices, 5000), (split.train_indices, 55000)):
        counts = np.bincount(fmnist.train_labels[indices], minlength=10)
        assert counts.max() - counts.min() <= 1
        assert counts.sum() == size


def test_split_refuses_an_impossible_size(fmnist):
    with pytest.raises(ValueError, match="val_size must be between 1 and 59999"):
        stratified_split(fmnist.train_labels, 60000)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_model_records_the_split_it_was_chosen_on_and_it_is_drawn_as_before(path, fmnist):
    model = load_model(path, device="cpu")
    recorded = metadata.validation_split(model.info.metadata)  # mlp.onnx: from its stored config
    assert recorded == metadata.ValidationSplit(val_size=5000, seed=0)
    split = stratified_split(fmnist.train_labels, recorded.val_size, recorded.seed)
    assert split.checksum == SHIPPED_SPLIT_SHA256
    # and it is the model's own validation split: its recorded accuracy comes out again on it
    images = fmnist.train_images[split.val_indices].astype(np.float32)[:, None] / 255
    accuracy = float((model.logits(images).argmax(1) == fmnist.train_labels[split.val_indices]).mean())
    assert accuracy == pytest.approx(metadata.number(model.info.metadata, metadata.VAL_ACCURACY), abs=5e-5)


REPORT_WITHOUT_TORCH = """
import argparse, json, sys
from pathlib import Path

import wardrobe.cli  # what `wardrobe report` imports before it calls the report
from report import cli
from report.compute import ReportSettings

args = argparse.Namespace(model=Path(sys.argv[1]), compare=None, run=None, out=Path(sys.argv[2]),
                          fail_under=[], data_dir=None, wardrobe=None)
settings = ReportSettings(limit=100, val_limit=200, robustness_images=10, photo_images=4, style_images=2,
                          bootstrap_resamples=20, progress=False, baseline_model=None, ablation=None,
                          ablation_cnn=None)
report = cli.write_report(args, settings)
print(json.dumps({"torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
                  "split_checksum": report["data"]["split_checksum"]}))
"""


def test_a_report_on_an_onnx_file_never_imports_torch(tmp_path):
    assert importlib.util.find_spec("torch") is not None, "torch must be importable, or this proves nothing"
    model = REPO / "models" / "cnn-int8.onnx"
    done = subprocess.run(
        [sys.executable, "-c", REPORT_WITHOUT_TORCH, str(model), str(tmp_path / "report")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["torch"] == [], "the report's path loaded PyTorch"
    assert seen["split_checksum"] == SHIPPED_SPLIT_SHA256  # it validated on the split the model records
    assert (tmp_path / "report" / "report.html").is_file()
