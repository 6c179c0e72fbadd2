"""Inference timings for the GPU check: the runtime's ONNX session, torch eager and torch.compile.

Every figure is per call at a fixed batch size: images/s over the timed calls and
the p50/p99 latency of one call. onnxruntime calls go through `contract.runtime`
(numpy in, numpy out, so host<->device copies are included, as in the service);
torch calls take a tensor already on the device and synchronise after each call:
the reference for what the GPU itself can do. Imported only by benchmarks.gpu_check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

WARMUP_CALLS = 3


def time_calls(
    call: Callable[[], object], sync: Callable[[], None], batch: int, seconds: float, min_calls: int
) -> dict:
    """Time `call` (then `sync`) for at least `min_calls` calls and `seconds` of calls, after a warm-up."""
    t0 = time.perf_counter()
    call()
    sync()
    first_call_s = time.perf_counter() - t0  # includes compilation and kernel selection
    for _ in range(WARMUP_CALLS - 1):
        call()
        sync()
    latencies: list[float] = []
    start = time.perf_counter()
    while len(latencies) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        sync()
        latencies.append(time.perf_counter() - t0)
    lat = np.array(latencies)
    return {
        "batch": batch,
        "calls": len(lat),
        "images_per_s": round(batch * len(lat) / float(lat.sum()), 1),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
        "first_call_ms": round(first_call_s * 1e3, 1),
    }


def sample_pixels(n: int, seed: int = 0) -> np.ndarray:
    """float32 [n, 1, 28, 28] in [0, 1]: what the contract takes (the values do not change the timings)."""
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


class GpuSampler:
    """GPU utilisation (%) read from NVML (nvidia-ml-py) every `interval_s` while inside `with`.

    NVML counts devices regardless of CUDA_VISIBLE_DEVICES: `index` is the driver's
    numbering (0 on a one-GPU machine). Without NVML it records why and samples nothing.
    """

    def __init__(self, index: int = 0, interval_s: float = 0.1):
        self.index = index
        self.interval_s = interval_s
        self.samples: list[int] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception as exc:  # no package, no driver, no device: all mean "no figure"
            self.error = f"NVML unavailable ({type(exc).__name__}: {exc})"
            return self

        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    self.samples.append(int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
                except Exception as exc:
                    self.error = f"NVML read failed ({type(exc).__name__}: {exc})"
                    return

        self._thread = threading.Thread(target=loop, name="gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            import pynvml

            pynvml.nvmlShutdown()

    def summary(self) -> dict:
        if not self.samples:
            return {"samples": 0, "note": self.error or "no sample (the run was shorter than one interval)"}
        return {
            "samples": len(self.samples),
            "mean_pct": round(sum(self.samples) / len(self.samples), 1),
            "max_pct": max(self.samples),
        }


def bench_onnxruntime(model: Path, device: str, batches: tuple[int, ...], seconds: float, min_calls: int) -> dict:
    """The model through `contract.runtime.load_model` on `device`; fails unless that provider really runs it."""
    from contract.runtime import load_model

    classifier = load_model(model, device=device)
    providers = list(classifier.session.get_providers())
    wanted = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    if providers[0] != wanted:  # load_model already refuses a silent fallback; this says it in the results
        raise AssertionError(f"asked for {wanted}, the session runs {providers}")
    pixels = sample_pixels(max(batches))
    result: dict = {"model": str(model), "device": device, "providers": providers, "batches": {}}
    for batch in batches:
        x = pixels[:batch]
        with GpuSampler() as gpu:
            row = time_calls(lambda x=x: classifier.logits(x), lambda: None, batch, seconds, min_calls)
        if device == "cuda":
            row["gpu_utilisation"] = gpu.summary()
        result["batches"][str(batch)] = row
    return result


def bench_torch(
    graph,
    device: str,
    batches: tuple[int, ...],
    seconds: float,
    min_calls: int,
    bf16: bool,
    channels_last: bool,
    compile_backend: str | None = None,
) -> dict:
    """`graph` (the exported InferenceGraph in torch) on `device`; optionally through torch.compile."""
    import torch

    dev = torch.device(device)
    graph = graph.to(dev).eval()
    if channels_last:
        graph = graph.to(memory_format=torch.channels_last)
    model = graph
    if compile_backend is not None:
        model = torch.compile(graph, backend=compile_backend)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    pixels = torch.from_numpy(sample_pixels(max(batches))).to(dev)
    result: dict = {
        "device": device,
        "autocast_bf16": bf16,
        "channels_last": channels_last,
        "compile_backend": compile_backend,
        "batches": {},
    }
    for batch in batches:
        x = pixels[:batch]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def call(x=x):
            with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                return model(x)

        with GpuSampler() as gpu:
            row = time_calls(call, sync, batch, seconds, min_calls)
        if dev.type == "cuda":
            row["gpu_utilisation"] = gpu.summary()
        result["batches"][str(batch)] = row
    return result
