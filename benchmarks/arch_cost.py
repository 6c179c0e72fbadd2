"""What a CNN architecture would cost to serve, before training it: untrained candidates exported
exactly as a trained run would be (BatchNorm folded, mirror view) and timed side by side.

    .venv/bin/python -m benchmarks.arch_cost [--threads 2] [--rounds 5]

The candidates are the architectures weighed for the shipped model (`configs/cnn.toml`); the
first is the one shipped before. Results: benchmarks/results/arch_cost.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import onnx

from benchmarks.model_speed import measure
from contract.files import write_json
from contract.metadata import source_commit, write_metadata
from training.export import InferenceGraph, fold_batchnorm, to_onnx
from training.fashion_mnist import CLASSES
from training.models import ModelConfig, build_model, count_parameters

RESULTS = Path(__file__).resolve().parent / "results" / "arch_cost.json"
CANDIDATES = {
    "32/64/128 × 2,2,2 (shipped before)": ModelConfig(channels=(32, 64, 128), stage_convs=(2, 2, 2)),
    "32/64/128 × 1,2,2": ModelConfig(channels=(32, 64, 128), stage_convs=(1, 2, 2)),
    "32/64/128 × 1,2,3": ModelConfig(channels=(32, 64, 128), stage_convs=(1, 2, 3)),
    "24/64/160 × 2,2,2": ModelConfig(channels=(24, 64, 160), stage_convs=(2, 2, 2)),
    "32/80/160 × 1,2,2": ModelConfig(channels=(32, 80, 160), stage_convs=(1, 2, 2)),
    "32/64/192 × 1,2,2": ModelConfig(channels=(32, 64, 192), stage_convs=(1, 2, 2)),
}


def export_untrained(cfg: ModelConfig, path: Path) -> int:
    """Write the candidate as the exporter would ship it; return its parameter count."""
    model = build_model(cfg).eval()
    proto = to_onnx(InferenceGraph(fold_batchnorm(model), tta_flip=True).eval())
    write_metadata(proto, {"classes": json.dumps(list(CLASSES))})
    onnx.save(proto, path)
    return count_parameters(build_model(cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        paths, params = {}, {}
        for i, (name, cfg) in enumerate(CANDIDATES.items()):
            paths[name] = Path(work) / f"candidate{i}.onnx"
            params[name] = export_untrained(cfg, paths[name])
        speeds = measure(list(paths.values()), args.threads, args.rounds)
    baseline = speeds[str(next(iter(paths.values())))]
    rows = []
    for name, path in paths.items():
        per = speeds[str(path)]
        row = {
            "architecture": name,
            "parameters": params[name],
            **{f"images_per_s_batch{n}": round(v, 1) for n, v in per.items()},
            **{f"speed_vs_shipped_batch{n}": round(v / baseline[n], 3) for n, v in per.items()},
        }
        rows.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    write_json(
        {
            "command": f"python -m benchmarks.arch_cost --threads {args.threads} --rounds {args.rounds}",
            "commit": source_commit(),
            "machine": f"{platform.processor() or platform.machine()}, threads={args.threads}",
            "rows": rows,
            "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        },
        RESULTS,
    )


if __name__ == "__main__":
    main()
