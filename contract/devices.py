"""Device names, checked in one place: the service's WARDROBE_DEVICE, the training
config's `device` and contract/runtime.py all accept exactly these.

Kept free of heavy imports so the training config can check a name without
loading onnxruntime.
"""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")
"""auto: CUDA when a GPU is usable, else CPU; cpu; cuda: a GPU or a clear error."""


def check_device(device: str, name: str = "device") -> str:
    """`device` if it is one of DEVICES; else a ValueError naming `name` (a flag, a key, a variable)."""
    if device not in DEVICES:
        raise ValueError(f"{name} must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, got {device!r}")
    return device
