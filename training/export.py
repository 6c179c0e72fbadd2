"""Export a trained run to the ONNX contract (docs/contract.md), with a parity check.

The graph takes raw pixels in [0, 1]: normalisation is already the model's
first layer, BatchNorm is folded into the preceding conv/linear, and when the
run evaluated with mirror test-time augmentation the graph averages both views.
Parity with PyTorch is checked over all 10,000 test images through the
contract's own runtime; a failed check leaves no file behind.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from contract import metadata as meta
from contract.calibration import UNSURE_TARGET_ACCURACY, calibration_metadata, fit_temperature, softmax
from contract.files import make_temp_beside, move_into_place, naming_the_file
from contract.preprocess import to_model_input
from contract.runtime import INPUT_NAME, OUTPUT_NAME, load_model
from contract.split import stratified_split
from training import fashion_mnist
from training.checkpoint import load_checkpoint
from training.config import TrainConfig, config_from_dict
from training.models import FMNIST_MEAN, FMNIST_STD, build_model, count_parameters
from training.progress import step

OPSET = 18
PARITY_TOLERANCE = 1e-3  # max |Δlogit| allowed between PyTorch and onnxruntime (float32)


class ExportError(RuntimeError):
    """Export failed (parity broken, unreadable source); no file was written."""


class InferenceGraph(nn.Module):
    """What ships: the eval-mode model, plus the mirrored view when the run used flip TTA, with
    its logits divided by the temperature fitted on validation, so that the softmax every caller
    takes is the calibrated confidence."""

    def __init__(self, model: nn.Module, tta_flip: bool, temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.tta_flip = tta_flip
        self.temperature = temperature

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.model(image)
        if self.tta_flip:
            logits = (logits + self.model(image.flip(-1))) / 2
        return logits / self.temperature if self.temperature != 1.0 else logits


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv/linear in a Sequential into it (eval mode)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            layers = list(child)
            folded: list[nn.Module] = []
            for layer in layers:
                prev = folded[-1] if folded else None
                if isinstance(layer, nn.BatchNorm2d) and isinstance(prev, nn.Conv2d):
                    folded[-1] = fuse_conv_bn_eval(prev, layer)
                elif isinstance(layer, nn.BatchNorm1d) and isinstance(prev, nn.Linear):
                    folded[-1] = fuse_linear_bn_eval(prev, layer)
                else:
                    folded.append(fold_batchnorm(layer))
            setattr(module, name, nn.Sequential(*folded))
        else:
            fold_batchnorm(child)
    return module


@dataclass(frozen=True)
class ExportResult:
    path: Path
    test_accuracy: float
    val_accuracy: float
    max_abs_logit_diff: float
    parameters: int
    size_bytes: int
    temperature: float
    test_ece: float
    unsure_threshold: float


def resolve_checkpoint(source: Path) -> tuple[Path, Path | None]:
    """A run directory means its best.pt; a file is taken as the checkpoint itself."""
    source = Path(source)
    if source.is_dir():
        ckpt = source / "best.pt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"{source}: no best.pt in this run directory")
        return ckpt, source
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such run directory or checkpoint")
    return source, source.parent if (source.parent / "config.json").is_file() else None


def load_trained(source: Path) -> tuple[nn.Module, TrainConfig, dict, Path | None]:
    ckpt_path, run_dir = resolve_checkpoint(source)
    state = load_checkpoint(ckpt_path)
    cfg = config_from_dict(state["config"])
    model = build_model(cfg.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ExportError(f"{ckpt_path}: weights do not match the config's architecture ({exc})") from None
    return model.eval(), cfg, state, run_dir


def _torch_logits(graph: nn.Module, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            out.append(graph(torch.from_numpy(to_model_input(images[start : start + batch]))).numpy())
    return np.concatenate(out)


def _save_proto(proto: onnx.ModelProto, out: Path) -> Path:
    tmp = make_temp_beside(out, suffix=".onnx.tmp")
    try:
        with naming_the_file(out, "model"):
            onnx.save(proto, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a model beside `out`
        raise
    return tmp


def to_onnx(graph: nn.Module) -> onnx.ModelProto:
    """Trace with a batch of 2 (a batch of 1 can freeze N=1) and a dynamic batch axis."""
    example = torch.rand(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    program = torch.onnx.export(
        graph,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        opset_version=OPSET,
        external_data=False,
        verbose=False,
    )
    program.optimize()
    return program.model_proto


def wardrobe_metadata(run_info: dict) -> dict[str, str]:
    """What a fine-tuned model learned from: the frozen export's checksum and item count, the
    held-out item ids (for the report and the service's canary) and the start weights."""
    wardrobe = run_info.get("wardrobe")
    if not wardrobe:
        return {}
    return {
        meta.WARDROBE_SHA256: wardrobe["sha256"],
        meta.WARDROBE_ITEMS: str(wardrobe["items"]),
        meta.WARDROBE_HELD_OUT: json.dumps(wardrobe["held_out_ids"]),
        meta.FINETUNED_FROM_SHA256: wardrobe["base_sha256"],
    }


def export(source: Path, out: Path, data_dir: str | None = None, parity_device: str = "cpu") -> ExportResult:
    """Export a run directory or checkpoint to `out` (atomically), after a full parity check
    run through the runtime on `parity_device` ("cpu" or "cuda")."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"--out {out}: the model file name must end in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    model, cfg, state, run_dir = load_trained(source)
    ds = fashion_mnist.load(data_dir or cfg.data.data_dir or None)
    split = meta.ValidationSplit(cfg.data.val_size, cfg.data.split_seed)
    val_idx = stratified_split(ds.train_labels, split.val_size, split.seed).val_indices

    # Temperature scaling on the validation split (never the test split), baked into the graph.
    val_images, val_labels = ds.train_images[val_idx], ds.train_labels[val_idx]
    with step(f"calibrating: a temperature on {len(val_idx):,} validation images"):
        val_logits = _torch_logits(InferenceGraph(model, cfg.tta_flip).eval(), val_images)
        temperature = fit_temperature(val_logits, val_labels)
    reference = InferenceGraph(copy.deepcopy(model), cfg.tta_flip, temperature).eval()
    shipped = InferenceGraph(fold_batchnorm(copy.deepcopy(model)), cfg.tta_flip, temperature).eval()
    with step("converting to ONNX"):
        proto = to_onnx(shipped)
    n_params = count_parameters(model)
    run_info = json.loads((run_dir / "config.json").read_text()) if run_dir else {}
    meta.write_metadata(
        proto,
        {
            meta.CLASSES: json.dumps(list(fashion_mnist.CLASSES)),
            meta.ARCHITECTURE: f"{cfg.model.arch.upper()} "
            + (
                f"hidden={list(cfg.model.hidden)}"
                if cfg.model.arch == "mlp"
                else f"channels={list(cfg.model.channels)} convs={list(cfg.model.convs)}"
            )
            + (" +flip-TTA" if cfg.tta_flip else ""),
            meta.PARAMETERS: str(n_params),
            meta.DATASET_SHA256: ds.checksum,
            **meta.split_metadata(split),
            meta.CONFIG: json.dumps(dataclasses.asdict(cfg)),
            meta.SOURCE_COMMIT: run_info.get("source_commit", "unknown"),
            meta.TRAINED_EPOCHS: str(state.get("epoch", "")),
            meta.EXPORTED_AT: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            meta.INPUT_MEAN: str(FMNIST_MEAN),
            meta.INPUT_STD: str(FMNIST_STD),
            meta.OPSET: str(OPSET),
        }
        | wardrobe_metadata(run_info),
    )
    tmp = _save_proto(proto, out)
    try:
        runtime = load_model(tmp, device=parity_device)
        with step(f"parity: onnxruntime and PyTorch on {len(ds.test_images):,} test images"):
            onnx_logits = runtime.logits(to_model_input(ds.test_images))
            torch_logits = _torch_logits(reference, ds.test_images)
        diff = float(np.abs(onnx_logits - torch_logits).max())
        mismatched = int((onnx_logits.argmax(1) != torch_logits.argmax(1)).sum())
        if mismatched or diff > PARITY_TOLERANCE:
            raise ExportError(
                f"parity check failed: {mismatched} of {len(onnx_logits)} test images change class, "
                f"max |Δlogit| {diff:.2e} (tolerance {PARITY_TOLERANCE:g}); nothing written to {out}"
            )
        test_acc = float((onnx_logits.argmax(1) == ds.test_labels).mean())
        val_probabilities = softmax(runtime.logits(to_model_input(val_images)))
        val_acc = float((val_probabilities.argmax(1) == val_labels).mean())
        calibration = calibration_metadata(val_probabilities, val_labels, softmax(onnx_logits), ds.test_labels)
        meta.write_metadata(
            proto,
            {
                meta.TEST_ACCURACY: f"{test_acc:.4f}",
                meta.VAL_ACCURACY: f"{val_acc:.4f}",
                meta.PARITY_REFERENCE: meta.PARITY_REFERENCE_PYTORCH,
                meta.PARITY_MAX_ABS_LOGIT_DIFF: f"{diff:.3e}",
                meta.PARITY_CHANGED_PREDICTIONS: str(mismatched),
                meta.TEMPERATURE: f"{temperature:.4f}",
                **calibration,
            },
        )
        with naming_the_file(out, "model"):
            onnx.save(proto, tmp)
            move_into_place(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(
        out, test_acc, val_acc, diff, n_params, out.stat().st_size, temperature,
        float(calibration[meta.TEST_ECE]), float(calibration[meta.UNSURE_THRESHOLD]),
    )  # fmt: skip


def export_from_cli(source: Path, out: Path, data_dir: Path | None = None) -> ExportResult:
    """`wardrobe export`: export, then print what was written and how it scored."""
    result = export(source, out, str(data_dir) if data_dir else None)
    print(f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB, {result.parameters:,} parameters)")
    print(f"parity over 10,000 test images: identical argmax, max |Δlogit| {result.max_abs_logit_diff:.2e}")
    print(f"validation accuracy {result.val_accuracy:.4f}, test accuracy {result.test_accuracy:.4f}")
    print(
        f"temperature {result.temperature:.3f} (fitted on validation, in the graph): test ECE {result.test_ece:.4f}; "
        f"unsure below confidence {result.unsure_threshold:.3f} "
        f"(validation accuracy {UNSURE_TARGET_ACCURACY:.0%} above it)"
    )
    return result
