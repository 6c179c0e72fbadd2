"""Which model file a server or `wardrobe predict` opens when none is named: serving policy.

$WARDROBE_MODEL when set; else the shipped CNN, or on the CPU its INT8 variant when that is
as accurate, found where `contract/variants.py` names it (the quantizer writes it there).
Opening and checking whichever file is chosen is the contract's job (contract/runtime.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from contract import metadata as meta
from contract.devices import select_providers
from contract.runtime import ModelError, check_model_file
from contract.variants import int8_variant
from service.settings import model_path_from_env

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "cnn.onnx"
"""The model served when none is named: the shipped CNN."""
INT8_MAX_ACCURACY_LOSS = 0.002
"""The INT8 variant is served on CPU only when its recorded test accuracy is at most this far below FP32's."""


def default_model_path(environ: Mapping[str, str] | None = None) -> Path:
    """$WARDROBE_MODEL if set, else the shipped CNN in <repo>/models/cnn.onnx."""
    return model_path_from_env(environ) or SHIPPED_MODEL


@dataclass(frozen=True)
class ModelChoice:
    """The model file to serve and why that one."""

    path: Path
    reason: str


def choose_model(device: str, environ: Mapping[str, str] | None = None) -> ModelChoice:
    """$WARDROBE_MODEL when set; else, on CPU, the shipped INT8 variant when it sits beside the FP32
    file and its recorded test accuracy is within INT8_MAX_ACCURACY_LOSS of FP32's; else FP32."""
    if explicit := model_path_from_env(environ):
        return ModelChoice(explicit, "WARDROBE_MODEL is set")
    fp32 = SHIPPED_MODEL
    if select_providers(device)[0] != "CPUExecutionProvider":
        return ModelChoice(fp32, "FP32 on the GPU")
    int8 = int8_variant(fp32)
    if not int8.is_file():
        return ModelChoice(fp32, f"no INT8 variant at {int8}")
    try:
        int8_accuracy = meta.number(meta.read_metadata(check_model_file(int8)), meta.TEST_ACCURACY)
        fp32_accuracy = meta.number(meta.read_metadata(check_model_file(fp32)), meta.TEST_ACCURACY)
    except (ModelError, meta.MetadataError) as exc:
        return ModelChoice(fp32, f"INT8 variant not usable: {exc}")
    if int8_accuracy < fp32_accuracy - INT8_MAX_ACCURACY_LOSS:
        return ModelChoice(
            fp32, f"INT8 test accuracy {int8_accuracy:.4f} is more than {INT8_MAX_ACCURACY_LOSS * 100:g} "
            f"points below FP32's {fp32_accuracy:.4f}",
        )  # fmt: skip
    return ModelChoice(int8, f"INT8 on CPU (test accuracy {int8_accuracy:.4f}, FP32 {fp32_accuracy:.4f})")
