"""Device names, checked in one place, and the onnxruntime execution providers each means here.

The service's WARDROBE_DEVICE, the training config's `device` and contract/runtime.py all
accept exactly these names. onnxruntime is imported only inside the functions that ask it,
so the training config can check a name without loading it.
"""

from __future__ import annotations

import os

DEVICES = ("auto", "cpu", "cuda")
"""auto: CUDA when a GPU is usable, else CPU; cpu; cuda: a GPU or a clear error."""


def check_device(device: str, name: str = "device") -> str:
    """`device` if it is one of DEVICES; else a ValueError naming `name` (a flag, a key, a variable)."""
    if device not in DEVICES:
        raise ValueError(f"{name} must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, got {device!r}")
    return device


def _visible_gpu_count() -> int:
    """How many NVIDIA GPUs this process may use, asked of the driver (NVML, no CUDA context)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return 0
    try:
        import pynvml  # from nvidia-ml-py, a BentoML dependency

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library, no device: all mean "no GPU here"
        return 0
    if visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


def cuda_available() -> bool:
    """True when onnxruntime has a CUDA build and the driver reports a GPU this process may use."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and _visible_gpu_count() > 0


def select_providers(device: str) -> list[str]:
    """Execution providers for 'auto', 'cpu' or 'cuda'; CUDA only when a GPU is really there."""
    check_device(device)
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if cuda_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        import onnxruntime as ort

        raise RuntimeError(
            "device 'cuda' requested but no usable GPU: onnxruntime providers are "
            f"{ort.get_available_providers()} and the NVIDIA driver reports "
            f"{_visible_gpu_count()} visible device(s); use device 'auto' or 'cpu'"
        )
    return ["CPUExecutionProvider"]
