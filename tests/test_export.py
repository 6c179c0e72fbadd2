"""ONNX export: the contract, metadata, parity, atomic failure, INT8, and the shipped models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import tiny_checkpoint

from contract import metadata
from contract.preprocess import to_model_input
from contract.runtime import ModelError, check_model_file, load_model
from contract.split import Split, stratified_split
from training import export as export_module
from training import quantize
from training.fashion_mnist import CLASSES
from training.quantize import calibration_indices, quantize_int8
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
    assert meta["parity_reference"] == "pytorch" and meta["parity_changed_predictions"] == "0"
    assert metadata.validation_split(meta) == metadata.ValidationSplit(val_size=5000, seed=0)
    assert meta["val_size"] == "5000"


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


def test_int8_variant_keeps_the_contract_records_its_own_figures_and_calibrates_on_training_images(
    tiny_model_path, tmp_path, fmnist, monkeypatch
):
    drawn, fed = [], []
    monkeypatch.setattr(quantize, "calibration_indices",
                        lambda *a, **k: drawn.append(calibration_indices(*a, **k)) or drawn[-1])  # fmt: skip

    class RecordingTrainImages(quantize.TrainImages):
        def __init__(self, images, batch=100):
            fed.append(images.copy())
            super().__init__(images, batch)

    monkeypatch.setattr(quantize, "TrainImages", RecordingTrainImages)
    result = quantize_int8(tiny_model_path, tmp_path / "tiny-int8.onnx", calibration_images=200)

    # calibration: 200 images of the recorded training split, none of validation (or test)
    fp32 = load_model(tiny_model_path)
    recorded = metadata.validation_split(fp32.info.metadata)
    split = stratified_split(fmnist.train_labels, recorded.val_size, recorded.seed)
    [indices], [images] = drawn, fed
    assert len(indices) == 200 == len(set(indices.tolist()))
    assert set(indices.tolist()) <= set(split.train_indices.tolist())
    assert not set(indices.tolist()) & set(split.val_indices.tolist())
    np.testing.assert_array_equal(images, fmnist.train_images[indices])

    model = load_model(result.path)
    meta = model.info.metadata
    assert model.classes == tuple(CLASSES)
    assert "int8" in meta["quantization"]
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(result.path).graph.node)
    # the figures are the INT8 graph's own, not copied from the FP32 file
    test_input = to_model_input(fmnist.test_images)
    int8_logits, fp32_logits = model.logits(test_input), fp32.logits(test_input)
    assert float(meta["test_accuracy"]) == pytest.approx((int8_logits.argmax(1) == fmnist.test_labels).mean(), abs=5e-5)
    assert meta["parity_reference"] == "fp32-onnx"
    assert float(meta["parity_max_abs_logit_diff"]) == pytest.approx(
        float(np.abs(int8_logits - fp32_logits).max()), rel=1e-3
    )
    assert int(meta["parity_changed_predictions"]) == int((int8_logits.argmax(1) != fp32_logits.argmax(1)).sum())
    assert meta["parity_max_abs_logit_diff"] != fp32.info.metadata["parity_max_abs_logit_diff"]


def test_calibration_draws_only_from_the_training_part_of_the_split():
    split = Split(train_indices=np.arange(0, 100), val_indices=np.arange(100, 120), seed=0)
    drawn = calibration_indices(split, 50, seed=3)
    assert len(set(drawn.tolist())) == 50 and set(drawn.tolist()) <= set(range(100))
    np.testing.assert_array_equal(drawn, calibration_indices(split, 50, seed=3))  # seeded
    with pytest.raises(ValueError, match="calibration_images must be between 1 and 100"):
        calibration_indices(split, 101, seed=3)


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


def test_export_cli_shows_its_long_steps_as_plain_lines_and_ends_with_the_next_command(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "mine.onnx"
    assert cli_main(["export", str(ckpt), "--out", str(out)]) == 0
    captured = capsys.readouterr()  # not a terminal: no bars, no escape codes
    for started in ("calibrating: a temperature on 5,000 validation images", "converting to ONNX",
                    "parity: onnxruntime and PyTorch on 10,000 test images"):  # fmt: skip
        assert f"{started} ...\n" in captured.err and f"{started}: done in " in captured.err
    assert "\r" not in captured.err + captured.out and "\x1b" not in captured.err + captured.out
    assert captured.out.splitlines()[-2:] == [
        "next:",
        f"    wardrobe report --model {out} --compare models/cnn.onnx --out reports/mine/",
    ]
