"""contract.runtime: the contract check, devices, threads, batching and the answer format."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest

from contract import devices, runtime
from contract.devices import select_providers
from contract.runtime import ModelError, check_model_file, load_model, top_k_predictions


@pytest.fixture(scope="module")
def classifier(tiny_model_path):
    return load_model(tiny_model_path, device="cpu", threads=1)


def _rename_everywhere(model: onnx.ModelProto, old: str, new: str) -> None:
    for value in [*model.graph.input, *model.graph.output]:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _set_metadata(model: onnx.ModelProto, key: str, value: str | None) -> None:
    kept = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    if value is not None:
        model.metadata_props.add(key=key, value=value)


@pytest.fixture
def edited(tiny_model_path, tmp_path):
    """Save an edited copy of the tiny model: edited(change) -> path."""

    def make(change) -> object:
        model = onnx.load(tiny_model_path)
        change(model)
        path = tmp_path / "edited.onnx"
        onnx.save(model, path)
        return path

    return make


def test_tiny_model_passes_the_contract_check(tiny_model_path):
    model = check_model_file(tiny_model_path)
    assert [i.name for i in model.graph.input] == ["image"]


def test_info_names_file_checksum_classes_and_provider(classifier, tiny_model_path):
    info = classifier.info
    assert info.path == tiny_model_path
    assert info.sha256 == hashlib.sha256(tiny_model_path.read_bytes()).hexdigest()
    assert len(classifier.classes) == 10 and classifier.classes[7] == "Sneaker"
    assert json.loads(info.metadata["classes"]) == list(classifier.classes)
    assert info.providers == ("CPUExecutionProvider",)


@pytest.mark.parametrize("n", [1, 257])
def test_any_batch_size_gives_one_row_of_logits_per_image(classifier, n):
    images = np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)
    logits = classifier.logits(images)
    assert logits.shape == (n, 10) and logits.dtype == np.float32


def test_large_batches_are_chunked_without_changing_answers(classifier, monkeypatch):
    images = np.random.default_rng(0).random((257, 1, 28, 28), dtype=np.float32)
    whole = classifier.logits(images)
    monkeypatch.setattr(runtime, "CHUNK", 100)
    chunked = classifier.logits(images)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    np.testing.assert_allclose(classifier.logits(images[5:6]), whole[5:6], atol=1e-5)


def test_probabilities_are_a_softmax(classifier):
    images = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    p = classifier.probabilities(images)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    assert (p.argmax(1) == classifier.logits(images).argmax(1)).all()


def test_images_of_the_wrong_shape_are_refused(classifier):
    with pytest.raises(ValueError, match=r"shape \[N, 1, 28, 28\], got \[2, 28, 28\]"):
        classifier.logits(np.zeros((2, 28, 28), dtype=np.float32))


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(ModelError, match=r"nothing\.onnx: model file not found"):
        load_model(tmp_path / "nothing.onnx")


def test_truncated_model_is_refused(tiny_model_path, tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(tiny_model_path.read_bytes()[:5000])
    with pytest.raises(ModelError, match=r"cut\.onnx: not an ONNX model"):
        load_model(path)


def test_a_text_file_is_not_a_model(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are not weights\n")
    with pytest.raises(ModelError, match=r"notes\.onnx: not an ONNX model"):
        check_model_file(path)


def test_wrong_input_shape_is_refused(edited):
    def three_channels(model):
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3

    with pytest.raises(ModelError, match=r"input 'image' must have shape \[N, 1, 28, 28\]"):
        check_model_file(edited(three_channels))


def test_fixed_batch_size_is_refused(edited):
    def batch_of_one(model):
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1

    with pytest.raises(ModelError, match="batch axis N must be dynamic"):
        check_model_file(edited(batch_of_one))


def test_wrong_input_name_is_refused(edited):
    with pytest.raises(ModelError, match=r"one input named 'image', got \['pixels'\]"):
        check_model_file(edited(lambda m: _rename_everywhere(m, "image", "pixels")))


def test_wrong_output_name_is_refused(edited):
    with pytest.raises(ModelError, match=r"one output named 'logits', got \['scores'\]"):
        check_model_file(edited(lambda m: _rename_everywhere(m, "logits", "scores")))


def test_missing_classes_are_refused(edited):
    with pytest.raises(ModelError, match=r"edited\.onnx: metadata has no 'classes'"):
        load_model(edited(lambda m: _set_metadata(m, "classes", None)))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("T-shirt, Trouser", "not valid JSON"),
        (json.dumps(["a"] * 10), "10 distinct names"),
        (json.dumps([f"c{i}" for i in range(9)]), "10 distinct names"),
    ],
)
def test_malformed_classes_are_refused(edited, value, message):
    with pytest.raises(ModelError, match=message):
        check_model_file(edited(lambda m: _set_metadata(m, "classes", value)))


def test_weights_in_an_external_file_are_refused(tiny_model_path, tmp_path):
    path = tmp_path / "split.onnx"
    onnx.save(onnx.load(tiny_model_path), path, save_as_external_data=True, size_threshold=0)
    with pytest.raises(ModelError, match="external-data file"):
        check_model_file(path)


def test_cpu_is_chosen_when_no_gpu_is_visible(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert select_providers("auto") == ["CPUExecutionProvider"]
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="device 'cuda' requested but no usable GPU"):
        select_providers("cuda")


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda, got 'tpu'"):
        select_providers("tpu")


def test_threads_are_the_callers_and_never_read_from_the_environment(monkeypatch, tiny_model_path):
    monkeypatch.setenv("WARDROBE_THREADS", "many")  # a service setting: the contract does not read it
    assert load_model(tiny_model_path, device="cpu", threads=1).classes
    with pytest.raises(ValueError, match=r"threads must be 0 \(automatic\) or more, got -2"):
        load_model(tiny_model_path, device="cpu", threads=-2)


def test_top_k_answers_follow_the_http_contract():
    classes = [f"c{i}" for i in range(10)]
    p = np.full((2, 10), 0.01, dtype=np.float32)
    p[0, 7], p[0, 5], p[1, 2] = 0.873456, 0.04, 0.91
    answers = top_k_predictions(p, classes, 3, unsure_below=0.9)
    assert answers[0] == {
        "label": "c7",
        "class_id": 7,
        "confidence": 0.8735,
        "top_k": [
            {"label": "c7", "class_id": 7, "probability": 0.8735},
            {"label": "c5", "class_id": 5, "probability": 0.04},
            {"label": "c0", "class_id": 0, "probability": 0.01},
        ],
        "unsure": True,
    }
    assert answers[1]["label"] == "c2" and answers[1]["unsure"] is False
    assert len(top_k_predictions(p, classes, 50, unsure_below=0.5)[0]["top_k"]) == 10
    with pytest.raises(ValueError, match="top_k must be at least 1, got 0"):
        top_k_predictions(p, classes, 0, unsure_below=0.5)


def test_unsure_follows_the_threshold_the_model_records(tiny_model_path, tmp_path):
    import onnx

    from contract import metadata as meta

    model = load_model(tiny_model_path, device="cpu", threads=1)
    p = np.zeros((2, 10), dtype=np.float32)
    p[0, 3], p[0, 4], p[1, 3], p[1, 4] = 0.6, 0.4, 0.99, 0.01
    recorded = model.info.unsure_threshold
    assert recorded == float(model.info.metadata[meta.UNSURE_THRESHOLD])
    proto = onnx.load(tiny_model_path)
    meta.write_metadata(proto, {meta.UNSURE_THRESHOLD: "0.95"})
    onnx.save(proto, tmp_path / "strict.onnx")
    strict = load_model(tmp_path / "strict.onnx", device="cpu", threads=1)
    assert [a["unsure"] for a in strict.answers(p, 2)] == [True, False]
    # a model from before calibration records no threshold: the documented default applies
    del proto.metadata_props[[q.key for q in proto.metadata_props].index(meta.UNSURE_THRESHOLD)]
    onnx.save(proto, tmp_path / "legacy.onnx")
    legacy = load_model(tmp_path / "legacy.onnx", device="cpu", threads=1)
    assert legacy.info.unsure_threshold == meta.DEFAULT_UNSURE_THRESHOLD == 0.5
    assert [a["unsure"] for a in legacy.answers(p, 2)] == [False, False]
    meta.write_metadata(proto, {meta.UNSURE_THRESHOLD: "1.5"})
    onnx.save(proto, tmp_path / "broken.onnx")
    with pytest.raises(meta.MetadataError, match="unsure_threshold' must be in"):
        _ = load_model(tmp_path / "broken.onnx", device="cpu", threads=1).info.unsure_threshold


@pytest.fixture
def cuda_that_falls_back(monkeypatch):
    """A machine where onnxruntime and the driver report a GPU, but the CUDA provider cannot
    start (no CUDA/cuDNN libraries): sessions silently come up on the CPU, as onnxruntime does."""
    real_session = runtime.ort.InferenceSession
    asked = []

    def session(data, sess_options=None, providers=None):
        asked.append(list(providers))
        return real_session(data, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(runtime.ort, "InferenceSession", session)
    monkeypatch.setattr(runtime.ort, "preload_dlls", lambda: None, raising=False)
    return asked


def test_auto_device_falls_back_to_cpu_with_a_warning(cuda_that_falls_back, tiny_model_path, caplog):
    with caplog.at_level("WARNING", logger=runtime.__name__):
        classifier = load_model(tiny_model_path, device="auto", threads=1)
    assert cuda_that_falls_back == [["CUDAExecutionProvider", "CPUExecutionProvider"]]
    assert classifier.info.providers == ("CPUExecutionProvider",)
    assert "onnxruntime gave ['CPUExecutionProvider']" in caplog.text
    assert classifier.logits(np.zeros((3, 1, 28, 28), dtype=np.float32)).shape == (3, 10)


def test_cuda_device_refuses_to_fall_back_to_cpu(cuda_that_falls_back, tiny_model_path):
    fell_back = r"device 'cuda' requested but onnxruntime fell back to \['CPUExecutionProvider'\]"
    with pytest.raises(RuntimeError, match=fell_back):
        load_model(tiny_model_path, device="cuda", threads=1)
    assert cuda_that_falls_back == [["CUDAExecutionProvider", "CPUExecutionProvider"]]


def test_cpu_device_never_asks_for_cuda(cuda_that_falls_back, tiny_model_path):
    assert load_model(tiny_model_path, device="cpu", threads=1).info.providers == ("CPUExecutionProvider",)
    assert cuda_that_falls_back == [["CPUExecutionProvider"]]
