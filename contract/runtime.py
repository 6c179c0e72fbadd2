"""Opening an ONNX model file, checking it against the contract, and running it.

This is the one implementation of model loading: the HTTP service,
`wardrobe predict`, the exporter's parity check and the report all come
through `load_model`. The contract (docs/contract.md): input `image` float32
[N, 1, 28, 28] in [0, 1], output `logits` float32 [N, 10], and a `classes`
JSON list in the model's metadata (contract/metadata.py).

Which file to open is the caller's choice: the service's policy (the shipped
model, its INT8 variant, WARDROBE_MODEL) is service/model_choice.py.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from contract import metadata as meta
from contract.devices import select_providers

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
INPUT_SHAPE = (1, 28, 28)  # per image; the batch axis is dynamic
NUM_CLASSES = 10
CHUNK = 1024  # images per session.run: bounds memory for large batches without slowing small ones


class ModelError(ValueError):
    """A model file is missing, unreadable or breaks the contract (the message names the file)."""


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: where it came from, what it predicts, and where it runs."""

    path: Path
    sha256: str
    classes: tuple[str, ...]
    metadata: dict[str, str]
    providers: tuple[str, ...]

    @property
    def unsure_threshold(self) -> float:
        """Answers below this confidence are marked `unsure` (recorded at export, or the default)."""
        return meta.unsure_threshold(self.metadata)


class Classifier:
    """An onnxruntime session behind the contract: images in [0, 1] in, logits out."""

    def __init__(self, session: ort.InferenceSession, info: ModelInfo):
        self.session = session
        self.info = info

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def logits(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, 1, 28, 28] in [0, 1] -> float32 [N, 10], for any N (run in chunks)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"images must have shape [N, 1, 28, 28], got {list(images.shape)}")
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"images must be float32 in [0, 1], got dtype {images.dtype}")
        images = np.ascontiguousarray(images, dtype=np.float32)
        if len(images) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        outputs = [
            self.session.run([OUTPUT_NAME], {INPUT_NAME: images[start : start + CHUNK]})[0]
            for start in range(0, len(images), CHUNK)
        ]
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def answers(self, probabilities: np.ndarray, k: int) -> list[dict]:
        """The contract's answer per image for probabilities this model produced."""
        return top_k_predictions(probabilities, self.classes, k, unsure_below=self.info.unsure_threshold)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Softmax of the logits, float32 [N, 10]."""
        return softmax(self.logits(images))


def softmax(logits: np.ndarray, temperature: float = 1.0, dtype: type = np.float32) -> np.ndarray:
    """Row-wise softmax of logits / temperature, computed in `dtype`.

    The one softmax: the service answers in float32 (the default), the report
    computes its statistics in float64.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    z = np.asarray(logits, dtype=dtype)
    if temperature != 1.0:
        z = z / dtype(temperature)
    z = z - z.max(axis=1, keepdims=True)  # avoids overflow in exp
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------
# The contract check


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str | None]:
    """Each dimension as an int (fixed), a str (named, dynamic) or None (unknown)."""
    dims: list[int | str | None] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _check_tensor(path: Path, role: str, value_info: onnx.ValueInfoProto, expected: Sequence[int]) -> None:
    """Check a float32 tensor of shape [N, *expected] with N dynamic."""
    tensor_type = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type") or tensor_type.elem_type != onnx.TensorProto.FLOAT:
        got = onnx.TensorProto.DataType.Name(tensor_type.elem_type) if tensor_type.elem_type else "non-tensor"
        raise ModelError(f"{path}: {role} '{value_info.name}' must be float32, got {got}")
    dims = _dims(value_info)
    shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    want = "[N, " + ", ".join(map(str, expected)) + "]"
    if len(dims) != len(expected) + 1:
        raise ModelError(f"{path}: {role} '{value_info.name}' must have shape {want}, got {shown}")
    if isinstance(dims[0], int):
        raise ModelError(
            f"{path}: {role} '{value_info.name}' has a fixed batch size {dims[0]} ({shown}); "
            "the batch axis N must be dynamic"
        )
    for got, exp in zip(dims[1:], expected, strict=True):
        if isinstance(got, int) and got != exp:
            raise ModelError(f"{path}: {role} '{value_info.name}' must have shape {want}, got {shown}")


def _parse_classes(path: Path, metadata: dict[str, str]) -> tuple[str, ...]:
    try:
        return meta.parse_classes(metadata, NUM_CLASSES)
    except meta.MetadataError as exc:
        raise ModelError(f"{path}: {exc}") from None


def _check_proto(path: Path, model: onnx.ModelProto) -> tuple[str, ...]:
    """Check a parsed model against the contract; return its classes."""
    if not model.HasField("graph") or not model.graph.node:
        raise ModelError(f"{path}: not an ONNX model (no graph); is the file truncated or of another kind?")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ModelError(
            f"{path}: weights are stored in a separate external-data file; "
            "a shipped model is one self-contained .onnx file (export with external_data=False)"
        )
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a valid ONNX model ({first})") from None

    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ModelError(f"{path}: the model must have one input named '{INPUT_NAME}', got {[i.name for i in inputs]}")
    _check_tensor(path, "input", inputs[0], INPUT_SHAPE)
    outputs = list(model.graph.output)
    if [o.name for o in outputs] != [OUTPUT_NAME]:
        raise ModelError(
            f"{path}: the model must have one output named '{OUTPUT_NAME}', got {[o.name for o in outputs]}"
        )
    _check_tensor(path, "output", outputs[0], (NUM_CLASSES,))
    return _parse_classes(path, meta.read_metadata(model))


def _read(path: Path) -> bytes:
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file ({exc.strerror or exc})") from None
    if not data:
        raise ModelError(f"{path}: model file is empty")
    return data


def _parse(path: Path, data: bytes) -> onnx.ModelProto:
    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends; none of them is our bug
        raise ModelError(f"{path}: not an ONNX model or truncated ({type(exc).__name__}: {exc})") from None


def check_model_file(path: Path | str) -> onnx.ModelProto:
    """Check a model file against the contract without creating a session; return the model."""
    path = Path(path)
    model = _parse(path, _read(path))
    _check_proto(path, model)
    return model


# ---------------------------------------------------------------------------
# The session


def load_model(path: Path | str, device: str = "auto", threads: int | None = None) -> Classifier:
    """Open, check and warm up a model; the one way to get a Classifier. `threads`: onnxruntime's
    intra-op threads (None or 0: one per physical core)."""
    path = Path(path)
    return load_model_bytes(_read(path), path, device=device, threads=threads)


def load_model_bytes(data: bytes, name: Path | str, device: str = "auto", threads: int | None = None) -> Classifier:
    """load_model for a model held in memory (e.g. read from the model registry); `name` is what
    messages and `ModelInfo.path` call it."""
    path = Path(name)
    if threads is not None and threads < 0:
        raise ValueError(f"threads must be 0 (automatic) or more, got {threads!r}")
    providers = select_providers(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1  # one graph, run sequentially: more threads only contend
    if not data:
        raise ModelError(f"{path}: model file is empty")
    model = _parse(path, data)
    classes = _check_proto(path, model)
    if "CUDAExecutionProvider" in providers and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # makes pip-installed CUDA/cuDNN libraries visible (docs/contract.md)
        except Exception as exc:
            log.debug("onnxruntime.preload_dlls failed: %s", exc)
    try:
        session = ort.InferenceSession(data, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: onnxruntime cannot load the model ({first})") from None
    got = tuple(session.get_providers())
    if providers[0] not in got:
        if device == "cuda":
            raise RuntimeError(
                f"{path}: device 'cuda' requested but onnxruntime fell back to {list(got)} "
                "(CUDA 13 / cuDNN 9 libraries not found?)"
            )
        log.warning("%s: asked for %s, onnxruntime gave %s", path, providers, list(got))
    info = ModelInfo(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        classes=classes,
        metadata=meta.read_metadata(model),
        providers=got,
    )
    classifier = Classifier(session, info)
    try:
        # Warm-up: the first run allocates and picks kernels; do it now, not in a request.
        warm = classifier.logits(np.zeros((2, *INPUT_SHAPE), dtype=np.float32))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: the model fails on a test batch ({first})") from None
    if warm.shape != (2, len(classes)):
        raise ModelError(
            f"{path}: output 'logits' has shape {list(warm.shape)} for a batch of 2, expected [2, {len(classes)}]"
        )
    log.info(
        "loaded %s (sha256 %s…) on %s, intra-op threads %s",
        path, info.sha256[:12], ", ".join(got), options.intra_op_num_threads or "auto",
    )  # fmt: skip
    return classifier


def top_k_predictions(probabilities: np.ndarray, classes: Sequence[str], k: int, *, unsure_below: float) -> list[dict]:
    """One answer per image as docs/contract.md states: label, class_id, confidence, the top k, and
    `unsure` when the confidence is below `unsure_below` (see `ModelInfo.unsure_threshold`)."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        raise ValueError(f"probabilities must have shape [N, {len(classes)}], got {list(probabilities.shape)}")
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k!r}")
    k = min(k, len(classes))
    # stable sort so ties keep class order, which makes answers reproducible
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    answers = []
    for row, ids in zip(probabilities, order, strict=True):
        top = [{"label": classes[i], "class_id": int(i), "probability": round(float(row[i]), 4)} for i in ids]
        answers.append(
            {
                "label": top[0]["label"],
                "class_id": top[0]["class_id"],
                "confidence": top[0]["probability"],
                "top_k": top,
                "unsure": bool(row[ids[0]] < unsure_below),
            }
        )
    return answers
