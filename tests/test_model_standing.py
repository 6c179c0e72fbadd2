"""How the served model stands against the shipped one (service/model_standing.py): the figures the
ready line, /readyz and the page show, and the warning for a much worse model (issue 31)."""

from __future__ import annotations

from wardrobe_server import MODEL

from contract.runtime import load_model
from service.model_standing import Shipped, shipped_model, standing


def _recorded(path) -> float:
    return float(load_model(path, device="cpu").info.metadata["test_accuracy"])


def test_a_tiny_model_is_served_with_a_warning_naming_both_figures(tiny_model_path):
    tiny = load_model(tiny_model_path, device="cpu")
    shipped = Shipped(MODEL, _recorded(MODEL))
    figures = standing(tiny, shipped)
    assert figures["model_sha256"] == tiny.info.sha256
    assert figures["model_test_accuracy"] == _recorded(tiny_model_path) < shipped.test_accuracy - 0.5
    assert figures["shipped_test_accuracy"] == shipped.test_accuracy
    assert figures["warning"] == (
        f"model {tiny.info.sha256[:12]} records Fashion-MNIST test accuracy {figures['model_test_accuracy']:.4f}, "
        f"{(shipped.test_accuracy - figures['model_test_accuracy']) * 100:.1f} points below the shipped "
        f"cnn.onnx's {shipped.test_accuracy:.4f}"
    )


def test_the_shipped_model_and_one_within_a_point_of_it_get_no_warning():
    model = load_model(MODEL, device="cpu")
    assert standing(model, Shipped(MODEL, _recorded(MODEL)))["warning"] is None
    assert standing(model, Shipped(MODEL, _recorded(MODEL) + 0.0099))["warning"] is None
    assert standing(model, Shipped(MODEL, _recorded(MODEL) + 0.0101))["warning"] is not None


def test_the_shipped_model_on_cpu_is_the_file_a_server_would_choose_with_its_recorded_figure():
    shipped = shipped_model("cpu")
    assert shipped.path.parent == MODEL.parent and shipped.test_accuracy == _recorded(shipped.path)
