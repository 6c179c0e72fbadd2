"""service.model_choice: which model file is served when none is named."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from contract import devices
from contract import metadata as meta
from contract.variants import int8_variant
from service import model_choice
from service.model_choice import choose_model, default_model_path


def _shipped_pair(tmp_path, tiny_model_path, int8_accuracy: str | None) -> Path:
    """models/cnn.onnx and (unless None) a cnn-int8.onnx beside it recording `int8_accuracy`."""
    fp32 = tmp_path / "cnn.onnx"
    proto = onnx.load(tiny_model_path)
    meta.write_metadata(proto, {meta.TEST_ACCURACY: "0.9500"})
    onnx.save(proto, fp32)
    if int8_accuracy is not None:
        meta.write_metadata(proto, {meta.TEST_ACCURACY: int8_accuracy})
        onnx.save(proto, tmp_path / "cnn-int8.onnx")
    return fp32


def test_the_int8_variant_is_named_by_the_contract_beside_its_fp32_file():
    assert int8_variant(Path("/somewhere/cnn.onnx")) == Path("/somewhere/cnn-int8.onnx")
    assert int8_variant(model_choice.SHIPPED_MODEL).is_file()  # what the quantizer wrote, where the service looks


@pytest.mark.parametrize(
    ("int8_accuracy", "served", "why"),
    [
        ("0.9490", "cnn-int8.onnx", "INT8 on CPU"),  # 0.1 points below: close enough
        ("0.9600", "cnn-int8.onnx", "INT8 on CPU"),
        ("0.9470", "cnn.onnx", "more than 0.2 points below"),
        (None, "cnn.onnx", "no INT8 variant"),
    ],
)
def test_cpu_serves_the_int8_variant_only_when_it_is_as_accurate(
    monkeypatch, tmp_path, tiny_model_path, int8_accuracy, served, why
):
    monkeypatch.setattr(model_choice, "SHIPPED_MODEL", _shipped_pair(tmp_path, tiny_model_path, int8_accuracy))
    choice = choose_model("cpu", environ={})
    assert choice.path.name == served and why in choice.reason


def test_a_broken_int8_file_falls_back_to_fp32(monkeypatch, tmp_path, tiny_model_path):
    monkeypatch.setattr(model_choice, "SHIPPED_MODEL", _shipped_pair(tmp_path, tiny_model_path, "0.95"))
    (tmp_path / "cnn-int8.onnx").write_bytes(b"not a model")
    choice = choose_model("cpu", environ={})
    assert choice.path.name == "cnn.onnx" and "INT8 variant not usable" in choice.reason


def test_wardrobe_model_and_the_gpu_override_the_int8_default(monkeypatch, tmp_path, tiny_model_path):
    monkeypatch.setattr(model_choice, "SHIPPED_MODEL", _shipped_pair(tmp_path, tiny_model_path, "0.95"))
    explicit = choose_model("cpu", environ={"WARDROBE_MODEL": "/x/other.onnx"})
    assert explicit.path == Path("/x/other.onnx") and explicit.reason == "WARDROBE_MODEL is set"
    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    choice = choose_model("auto", environ={})
    assert choice.path.name == "cnn.onnx" and choice.reason == "FP32 on the GPU"


def test_default_model_path_honours_wardrobe_model(monkeypatch, tmp_path):
    monkeypatch.delenv("WARDROBE_MODEL", raising=False)
    assert default_model_path().parts[-2:] == ("models", "cnn.onnx")
    monkeypatch.setenv("WARDROBE_MODEL", str(tmp_path / "other.onnx"))
    assert default_model_path() == tmp_path / "other.onnx"
