"""FP32 vs INT8 (onnxruntime static quantization): test accuracy, file size and CPU speed, in one run.

    .venv/bin/python -m benchmarks.int8 [--fp32 models/cnn.onnx] [--int8 models/cnn-int8.onnx] [--batch 256]

Speed is the median over repeated runs of whole batches on the CPU with all cores
(the same session settings the service uses). Results: benchmarks/results/int8.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from contract.files import write_json
from contract.metadata import source_commit
from contract.preprocess import to_model_input
from contract.runtime import load_model
from training import fashion_mnist

RESULTS = Path(__file__).resolve().parent / "results" / "int8.json"


def images_per_second(model, batch: np.ndarray, repeats: int) -> float:
    model.logits(batch)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.logits(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, default=Path("models/cnn.onnx"))
    parser.add_argument("--int8", type=Path, default=Path("models/cnn-int8.onnx"))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    ds = fashion_mnist.load()
    test = to_model_input(ds.test_images)
    rows = {}
    for name, path in (("fp32", args.fp32), ("int8", args.int8)):
        model = load_model(path, device="cpu")
        accuracy = float((model.logits(test).argmax(1) == ds.test_labels).mean())
        rows[name] = {
            "path": str(path),
            "test_accuracy": accuracy,
            "size_bytes": path.stat().st_size,
            "images_per_s": images_per_second(model, test[: args.batch], args.repeats),
            "single_image_ms": 1000 / images_per_second(model, test[:1], args.repeats * 5),
        }
    drop = (rows["fp32"]["test_accuracy"] - rows["int8"]["test_accuracy"]) * 100
    speedup = rows["int8"]["images_per_s"] / rows["fp32"]["images_per_s"]
    for name, row in rows.items():
        print(
            f"{name}: test accuracy {row['test_accuracy']:.4f}, {row['size_bytes'] / 1e6:.2f} MB, "
            f"{row['images_per_s']:,.0f} images/s (batch {args.batch}), {row['single_image_ms']:.2f} ms/image alone"
        )
    print(f"INT8 accuracy drop {drop:.2f} points, speed ratio {speedup:.2f}x")
    write_json(
        {
            "command": f"python -m benchmarks.int8 --fp32 {args.fp32} --int8 {args.int8} --batch {args.batch}",
            "commit": source_commit(),
            "rows": rows,
            "accuracy_drop_points": drop,
            "int8_speed_ratio": speedup,
            "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        },
        RESULTS,
    )


if __name__ == "__main__":
    main()
