"""Which precision a training step runs in: bfloat16 autocast where the hardware has it, fp32 elsewhere.

On CPU, bf16 autocast is only faster with native bf16 units (AVX512-BF16 or AMX); without them
oneDNN emulates it and a step gets slower (pytorch #86550), so it is detected, never assumed.
Autocast keeps BatchNorm and the loss in fp32; exports and parity checks stay fp32.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "bf16", "fp32")


def cpu_has_bf16() -> bool:
    """True when this CPU runs bf16 matrix maths natively (AMX tiles or AVX512-BF16)."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_precision(setting: str, device: torch.device) -> str:
    """ "bf16" or "fp32" for `setting` ("auto", "bf16", "fp32") on `device`."""
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {setting!r}")
    if setting == "fp32":
        return "fp32"
    supported = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()
    if setting == "bf16" and not supported:
        raise ValueError(f"precision = 'bf16' but this {device.type.upper()} has no native bfloat16 support")
    return "bf16" if supported else "fp32"


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context for one forward pass (a no-op in fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
