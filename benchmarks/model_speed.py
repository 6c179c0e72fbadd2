"""Inference speed of ONNX models side by side: images/s at batch 1 and 64 on the CPU, in one run.

    .venv/bin/python -m benchmarks.model_speed models/cnn.onnx OLD.onnx [--threads 2] [--rounds 15]

The first model is the candidate, the others are compared with it (ratio = candidate's
images/s over the other's; ≥ 1.0 means the candidate is no slower). The models are timed
in alternating rounds so that a noisy neighbour slows all of them alike; each figure is
the median over rounds. Results: benchmarks/results/model_speed.json.
To compare with the model shipped before a commit C:
`git show C:models/cnn.onnx > /tmp/cnn-before.onnx`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from contract.files import write_json
from contract.metadata import source_commit
from contract.runtime import Classifier, load_model

RESULTS = Path(__file__).resolve().parent / "results" / "model_speed.json"
BATCHES = (1, 64)


def seconds_per_call(model: Classifier, batch: np.ndarray, calls: int) -> float:
    """Median wall time of one `model.logits(batch)` over `calls` calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model.logits(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(paths: list[Path], threads: int, rounds: int, seed: int = 0) -> dict[str, dict[int, float]]:
    """images/s per model and batch size, as the median over alternating rounds."""
    models = {str(p): load_model(p, device="cpu", threads=threads) for p in paths}
    rng = np.random.default_rng(seed)
    batches = {n: rng.random((n, 1, 28, 28), dtype=np.float32) for n in BATCHES}
    samples: dict[str, dict[int, list[float]]] = {name: {n: [] for n in BATCHES} for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            for n, batch in batches.items():
                calls = 200 if n == 1 else 20
                samples[name][n].append(n / seconds_per_call(model, batch, calls))
    return {name: {n: statistics.median(v) for n, v in per.items()} for name, per in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="candidate first, then the models to compare with")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("give the candidate model and at least one model to compare with")

    speeds = measure(args.models, args.threads, args.rounds)
    candidate = str(args.models[0])
    rows = []
    for name, per in speeds.items():
        row = {"model": name, **{f"images_per_s_batch{n}": round(v, 1) for n, v in per.items()}}
        if name != candidate:
            row.update({f"candidate_ratio_batch{n}": round(speeds[candidate][n] / v, 3) for n, v in per.items()})
        rows.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    write_json(
        {
            "command": "python -m benchmarks.model_speed "
            + " ".join(map(str, args.models))
            + f" --threads {args.threads} --rounds {args.rounds}",
            "commit": source_commit(),
            "machine": f"{platform.processor() or platform.machine()}, threads={args.threads}",
            "rows": rows,
            "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
