"""INT8 variant of an exported model: onnxruntime static quantization (QDQ, per-channel
weights), calibrated on training images — never on validation or test images.

The INT8 file records its own figures in its metadata: test and validation
accuracy measured on the INT8 graph, and parity against the FP32 model it was
made from (largest |Δlogit| and how many test predictions change).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

from contract import metadata as meta
from contract.calibration import calibration_metadata, softmax
from contract.files import move_into_place
from contract.preprocess import to_model_input
from contract.runtime import INPUT_NAME, load_model
from contract.split import Split, stratified_split
from contract.variants import int8_variant
from training import fashion_mnist
from training.progress import step


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    test_accuracy: float
    val_accuracy: float
    max_abs_logit_diff: float
    changed_predictions: int
    size_bytes: int


class TrainImages(CalibrationDataReader):
    """Feeds calibration batches of training-split images to the quantizer."""

    def __init__(self, images: np.ndarray, batch: int = 100):
        self.batches = iter([to_model_input(images[i : i + batch]) for i in range(0, len(images), batch)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def calibration_indices(split: Split, count: int, seed: int) -> np.ndarray:
    """`count` indices drawn (seeded, without replacement) from the split's training part only."""
    if not 0 < count <= len(split.train_indices):
        raise ValueError(
            f"calibration_images must be between 1 and {len(split.train_indices)} (the training split), got {count}"
        )
    return np.random.default_rng(seed).choice(split.train_indices, size=count, replace=False)


def _quantize_static(prepared: Path, quantized: Path, calibration: CalibrationDataReader) -> None:
    quantize_static(
        str(prepared),
        str(quantized),
        calibration,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        # 7-bit weights: on CPUs without VNNI (AVX2 only, like our CI machine) the u8×s8
        # kernels can saturate their int16 sums with full 8-bit weights and lose accuracy;
        # reduce_range trades one bit of weight precision for exact sums everywhere.
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def quantize_int8(
    fp32_path: Path, out: Path | None = None, data_dir: str | None = None, calibration_images: int = 2000, seed: int = 0
) -> QuantizeResult:
    """Quantize `fp32_path` to `out` (default `<name>-int8.onnx`) atomically; metadata carries over,
    and the figures that describe the file (accuracy, parity) are the INT8 model's own."""
    fp32_path = Path(fp32_path)
    out = Path(out) if out is not None else int8_variant(fp32_path)
    fp32 = load_model(fp32_path, device="cpu")
    try:
        recorded = meta.validation_split(fp32.info.metadata)
    except meta.MetadataError as exc:
        raise ValueError(f"{fp32_path}: {exc}") from None
    ds = fashion_mnist.load(data_dir)
    split = stratified_split(ds.train_labels, recorded.val_size, recorded.seed)
    calib_idx = calibration_indices(split, calibration_images, seed)
    test_input = to_model_input(ds.test_images)

    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        quantized = Path(work) / "quantized.onnx"
        with step(f"quantizing to INT8, calibrated on {calibration_images:,} training images"):
            _quantize_static(prepared, quantized, TrainImages(ds.train_images[calib_idx]))
        proto = onnx.load(str(quantized))
        metadata = dict(fp32.info.metadata)
        metadata[meta.QUANTIZATION] = (
            f"int8 static QDQ, per-channel 7-bit weights, {calibration_images} training images"
        )
        meta.write_metadata(proto, metadata)
        onnx.save(proto, str(quantized))
        int8 = load_model(quantized, device="cpu")
        with step(f"scoring INT8 against FP32 on {len(test_input):,} test images"):
            int8_logits = int8.logits(test_input)
            fp32_logits = fp32.logits(test_input)
        diff = float(np.abs(int8_logits - fp32_logits).max())
        changed = int((int8_logits.argmax(1) != fp32_logits.argmax(1)).sum())
        test_acc = float((int8_logits.argmax(1) == ds.test_labels).mean())
        val_input = to_model_input(ds.train_images[split.val_indices])
        val_labels = ds.train_labels[split.val_indices]
        val_probabilities = softmax(int8.logits(val_input))
        val_acc = float((val_probabilities.argmax(1) == val_labels).mean())
        # The FP32 file's figures describe the FP32 graph: every one is replaced by the INT8 graph's own.
        meta.write_metadata(
            proto,
            {
                meta.TEST_ACCURACY: f"{test_acc:.4f}",
                meta.VAL_ACCURACY: f"{val_acc:.4f}",
                meta.PARITY_REFERENCE: meta.PARITY_REFERENCE_FP32,
                meta.PARITY_MAX_ABS_LOGIT_DIFF: f"{diff:.3e}",
                meta.PARITY_CHANGED_PREDICTIONS: str(changed),
                **calibration_metadata(val_probabilities, val_labels, softmax(int8_logits), ds.test_labels),
            },
        )
        onnx.save(proto, str(quantized))
        move_into_place(quantized, out)
    return QuantizeResult(out, test_acc, val_acc, diff, changed, out.stat().st_size)


def quantize_from_cli(fp32, data_dir: Path | None = None) -> QuantizeResult:
    """`wardrobe export --quantize int8`: quantize the just-exported `fp32` (an ExportResult) and
    print how the INT8 file scores against it."""
    q = quantize_int8(fp32.path, data_dir=str(data_dir) if data_dir else None)
    print(
        f"wrote {q.path} ({q.size_bytes / 1e6:.2f} MB): test accuracy {q.test_accuracy:.4f} "
        f"({(q.test_accuracy - fp32.test_accuracy) * 100:+.2f} points vs FP32)"
    )
    return q
