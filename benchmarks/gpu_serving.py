"""The serving part of the GPU check: the real BentoML service on the GPU under the load benchmark.

Uses benchmarks.load's pieces (its wrk script, `wrk`, the /metrics reading) and
service.serve's start/stop helpers, one load level at a time, with the batch
sizes the service formed (from its `wardrobe_batch_size` histogram) and the GPU
utilisation (NVML) during each level. Imported only by benchmarks.gpu_check, and
only once `missing_for_serving` has found nothing missing: it needs bentoml.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from benchmarks.gpu_inference import GpuSampler

# (name, connections, images per request): the two loads.
LEVELS = (("64 connections x 1 image", 64, 1), ("8 connections x 64 images", 8, 64))


def missing_for_serving(dry: bool) -> list[str]:
    """What this machine lacks for the serving measurement; empty when it can run."""
    missing = []
    if dry:
        missing.append("dry mode: serving is measured on a GPU only")
    if importlib.util.find_spec("bentoml") is None:
        missing.append("bentoml is not installed")
    try:
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            missing.append(f"onnxruntime {onnxruntime.__version__} is the CPU build (onnxruntime-gpu not installed)")
    except ImportError:
        missing.append("onnxruntime is not installed")
    if shutil.which("wrk") is None:
        missing.append("wrk is not installed (the load benchmark's HTTP load generator)")
    return missing


def batch_histogram(url: str) -> dict[str, float]:
    """The service's wardrobe_batch_size histogram summed over workers: bucket counts, count and sum."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for le, value in re.findall(r'^wardrobe_batch_size_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$', text, re.M):
        totals[f"le_{le}"] = totals.get(f"le_{le}", 0.0) + float(value)
    for name in ("count", "sum"):
        values = re.findall(rf"^wardrobe_batch_size_{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        totals[name] = sum(float(v) for v in values)
    return totals


def run_serving(model: Path, work_dir: Path, duration_s: int, device: str = "cuda") -> dict:
    """Start the service with WARDROBE_DEVICE=`device`, run each level with wrk, stop the service."""
    from benchmarks.load import LUA, free_port, wrk
    from service.serve import SERVICE, stop, wait_ready

    script = work_dir / "post.lua"
    script.write_text(LUA)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WARDROBE_MODEL": str(Path(model).resolve()), "WARDROBE_DEVICE": device}
    root = Path(__file__).resolve().parents[1]
    with open(work_dir / "service.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port)],
                                   cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_ready(process, url, timeout_s=180)
            wrk(url, 16, 2, 1, script)  # warm-up: connections, first batches, CUDA kernels
            levels = {}
            for name, connections, files in LEVELS:
                before = batch_histogram(url)
                with GpuSampler() as gpu:
                    row = wrk(url, connections, duration_s, files, script)
                after = batch_histogram(url)
                formed = {k: after[k] - before.get(k, 0.0) for k in after}
                calls = formed.pop("count")
                row["mean_batch_size"] = round(formed.pop("sum") / calls, 2) if calls else None
                row["batch_size_cumulative_counts"] = formed  # Prometheus buckets: calls with size <= le
                row["gpu_utilisation"] = gpu.summary()
                levels[name] = row
        finally:
            stop(process)
    return {"model": str(model), "device": device, "duration_s": duration_s, "levels": levels}
