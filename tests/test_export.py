"""ONNX export: the contract, metadata, parity, atomic failure, INT8, and the shipped models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import tiny_checkpoint

from contract.runtime import ModelError, check_model_file, load_model
from training import export as export_module
from training.fashion_mnist import CLASSES
from training.quantize import quantize_int8
from wardrobe.cli import main as cli_main

MODELS = Path(__file__).resolve().parents[1] / "models"
REQUIRED_METADATA = {
    "classes", "architecture", "parameters", "val_accuracy", "test_accuracy", "dataset_sha256",
    "config", "source_commit", "exported_at",
}  # fmt: skip


def test_exported_graph_follows_the_contract(tiny_model_path):
    model = check_model_file(tiny_model_path)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "image" and out.name == "logits"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [1, 28, 28]
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node), "BatchNorm must be folded"
    assert len(model.graph.initializer) > 0 and not any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer
    ), "one self-contained file"


@pytest.mark.parametrize("n", [1, 2, 257])
def test_dynamic_batch_axis_accepts_any_size(tiny_model_path, n):
    logits = load_model(tiny_model_path).logits(np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32))
    assert logits.shape == (n, 10) and logits.dtype == np.float32


def test_an_image_gets_the_same_answer_alone_and_in_a_batch(tiny_model_path, fmnist):
    model = load_model(tiny_model_path)
    batch = fmnist.test_images[:64].astype(np.float32)[:, None] / 255
    together = model.logits(batch)
    for i in (0, 31, 63):
        np.testing.assert_allclose(model.logits(batch[i : i + 1])[0], together[i], atol=1e-5)


def test_metadata_is_complete_and_parseable(tiny_model_path, fmnist):
    meta = load_model(tiny_model_path).info.metadata
    assert set(meta) >= REQUIRED_METADATA
    assert json.loads(meta["classes"]) == list(CLASSES)
    assert json.loads(meta["config"])["model"]["arch"] == "cnn"
    assert int(meta["parameters"]) > 0
    assert meta["dataset_sha256"] == fmnist.checksum
    assert 0.0 <= float(meta["test_accuracy"]) <= 1.0
    assert float(meta["parity_max_abs_logit_diff"]) <= export_module.PARITY_TOLERANCE


def test_broken_parity_fails_loudly_and_writes_nothing(tmp_path, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", steps=5)
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", -1.0)  # no float difference can pass
    out = tmp_path / "models" / "broken.onnx"
    with pytest.raises(export_module.ExportError, match="parity check failed"):
        export_module.export(ckpt, out)
    assert not out.exists()
    assert not list(out.parent.glob("*tmp*"))


def test_export_cli_names_a_missing_run(tmp_path, capsys):
    assert cli_main(["export", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "no-such-run: no such run directory or checkpoint" in capsys.readouterr().err


def test_export_refuses_an_out_path_that_is_not_onnx(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", steps=1)
    assert cli_main(["export", str(ckpt), "--out", str(tmp_path / "model.pt")]) == 1
    assert "must end in .onnx" in capsys.readouterr().err


def test_int8_variant_keeps_the_contract_and_metadata(tiny_model_path, tmp_path):
    result = quantize_int8(tiny_model_path, tmp_path / "tiny-int8.onnx", calibration_images=200)
    model = load_model(result.path)
    assert model.classes == tuple(CLASSES)
    assert "int8" in model.info.metadata["quantization"]
    assert float(model.info.metadata["test_accuracy"]) == pytest.approx(result.test_accuracy, abs=1e-4)
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(result.path).graph.node)


def test_truncated_model_file_is_refused(tiny_model_path, tmp_path):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny_model_path.read_bytes()[:-500])
    with pytest.raises(ModelError, match=r"cut\.onnx"):
        load_model(cut)


SHIPPED = sorted(MODELS.glob("*.onnx"))


def test_the_default_and_baseline_models_are_shipped():
    assert {"cnn.onnx", "mlp.onnx"} <= {p.name for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_matches_its_recorded_test_accuracy(path, fmnist):
    model = load_model(path)
    assert model.classes == tuple(CLASSES)
    predictions = model.logits(fmnist.test_images.astype(np.float32)[:, None] / 255).argmax(1)
    accuracy = float((predictions == fmnist.test_labels).mean())
    assert accuracy == pytest.approx(float(model.info.metadata["test_accuracy"]), abs=5e-5)
    assert model.info.metadata["dataset_sha256"] == fmnist.checksum
