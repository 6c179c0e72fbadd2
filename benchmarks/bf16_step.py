"""One training step in fp32 against bfloat16 autocast on this CPU, beside the data loader alone.

    .venv/bin/python -m benchmarks.bf16_step [--threads 2] [--rounds 5] [--steps 6]

For each architecture (the VGG-style CNN shipped before, the ResNet shipped now): a full step
(forward, fp32 loss, backward, Nesterov SGD) on a batch of 256, channels_last, timed in fp32 and
bf16 in alternating rounds so a noisy neighbour slows both alike; medians over rounds. The same
run times `TensorBatchLoader` handing out augmented batches of the shipped recipe (no model), and
checks that oneDNN really picks AMX kernels for bf16 operands (`ONEDNN_VERBOSE=1`: the ISA is named
`avx512_core_amx_bf16` by older oneDNN releases, `avx10_1_512_amx` by the one torch 2.14 ships).
Results: benchmarks/results/bf16_step.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from contract.files import write_json
from contract.metadata import source_commit
from training import fashion_mnist
from training.augment import AugmentConfig
from training.config import load_config
from training.data import TensorBatchLoader
from training.models import ModelConfig, build_model
from training.precision import autocast, cpu_has_bf16

RESULTS = Path(__file__).resolve().parent / "results" / "bf16_step.json"
REPO = Path(__file__).resolve().parents[1]
ARCHITECTURES = {
    "CNN 32/64/128 × 2,2,2 (configs/cnn.toml)": ModelConfig(arch="cnn", channels=(32, 64, 128), convs_per_stage=2),
    "ResNet 32/64/128 × 0,1,2 (configs/resnet.toml)": ModelConfig(
        arch="resnet", channels=(32, 64, 128), stage_convs=(0, 1, 2)
    ),
}
BATCH = 256
CPU = torch.device("cpu")


def step_seconds(model, optimizer, x, y, precision: str, steps: int) -> float:
    """Median seconds of `steps` training steps after one warm-up step."""
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with autocast(CPU, precision):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def loader_images_per_s(augment: AugmentConfig, repeats: int) -> float:
    """Augmented training images per second from the in-memory loader alone, over a whole epoch."""
    ds = fashion_mnist.load(download=False)
    loader = TensorBatchLoader(ds.train_images[:55000], ds.train_labels[:55000], BATCH, CPU, shuffle=True,
                               augment=augment, drop_last=True)  # fmt: skip
    rates = []
    for epoch in range(repeats):
        loader.set_epoch(epoch)
        start, seen = time.perf_counter(), 0
        for x, _ in loader:
            seen += len(x)
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates)


def amx_kernels_seen() -> dict[str, int]:
    """oneDNN primitives run on AMX with bf16 operands during one bf16 step, counted by kernel name."""
    probe = (
        "import torch; from training.models import ModelConfig, build_model;"
        "m = build_model(ModelConfig(arch='resnet', channels=(32, 64), stage_convs=(0, 1)))"
        ".to(memory_format=torch.channels_last);"
        "x = torch.rand(64, 1, 28, 28).contiguous(memory_format=torch.channels_last);"
        "ctx = torch.autocast('cpu', dtype=torch.bfloat16);"
        "ctx.__enter__(); y = m(x); ctx.__exit__(None, None, None); y.float().sum().backward()"
    )
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    kernels: dict[str, int] = {}
    for line in out.stdout.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields and "amx" in line and "src:bf16" in line:
            kernel = fields[6]  # e.g. brg_conv_fwd:avx10_1_512_amx
            kernels[kernel] = kernels.get(kernel, 0) + 1
    return kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not cpu_has_bf16():
        sys.exit("bf16_step: this CPU has neither AMX nor AVX512-BF16; there is nothing to compare")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(BATCH, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))
    rows = []
    for name, cfg in ARCHITECTURES.items():
        model = build_model(cfg).to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        samples = {"fp32": [], "bf16": []}
        for _ in range(args.rounds):
            for precision in samples:
                samples[precision].append(step_seconds(model, optimizer, x, y, precision, args.steps))
        fp32, bf16 = (statistics.median(samples[p]) for p in ("fp32", "bf16"))
        rows.append({"architecture": name, "fp32_step_ms": round(fp32 * 1e3, 1), "bf16_step_ms": round(bf16 * 1e3, 1),
                     "speedup": round(fp32 / bf16, 2), "bf16_images_per_s": round(BATCH / bf16)})  # fmt: skip
        print(f"{name}: fp32 {fp32 * 1e3:.0f} ms, bf16 {bf16 * 1e3:.0f} ms a step of {BATCH} ({fp32 / bf16:.2f}×)")
    augment = load_config(REPO / "configs" / "resnet.toml").augment
    loader = loader_images_per_s(augment, repeats=3)
    print(f"loader alone (translate, flip, erasing on whole batches): {loader:,.0f} images/s")
    amx = amx_kernels_seen()
    print(f"oneDNN primitives on AMX with bf16 operands: {amx or 'none'}")
    write_json(
        {
            "command": "python -m benchmarks.bf16_step " + " ".join(sys.argv[1:]),
            "source_commit": source_commit(),
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "threads": args.threads,
                "load_average": os.getloadavg(),
            },  # fmt: skip
            "batch_size": BATCH,
            "steps": rows,
            "loader_images_per_s": round(loader),
            "amx_bf16_kernels": amx,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
