"""How well the shipped model classifies product-photo-like images, against 28×28 originals.

Each test image is turned into a photo-like file (report/photolike.py: enlarged,
coloured, dark on a light uneven background, off-centre, JPEG/PNG/WebP), then
sent through the service's own preprocessing. The figure is the ratio of that
accuracy to the accuracy on the same images as 28×28 originals (goal ≥ 0.95),
next to a plain-resize baseline (no trimming, no negation: about chance).

    .venv/bin/python -m benchmarks.photo_accuracy [--model models/cnn.onnx] [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from contract.preprocess import decode_image, to_fashion_mnist, to_model_input
from contract.runtime import load_model
from report.photolike import photo_like_set
from training.fashion_mnist import load

GOAL = 0.95
RESULTS = Path(__file__).resolve().parent / "results" / "photo_accuracy.json"


def plain_resize(image: Image.Image) -> np.ndarray:
    """The naive baseline: squash to 28×28 grey, no trimming, no negation."""
    return np.asarray(image.convert("L").resize((28, 28), Image.Resampling.BILINEAR))


def evaluate(model_path: Path, n: int, seed: int, data_dir: Path | None = None) -> dict:
    """Accuracy on originals, photo-like versions and the plain-resize baseline of n test images."""
    classifier = load_model(model_path)
    data = load(data_dir)
    rng = np.random.default_rng(seed)
    n = min(n, len(data.test_labels))
    pick = np.sort(rng.choice(len(data.test_labels), size=n, replace=False))
    crops, labels = data.test_images[pick], data.test_labels[pick]

    start = time.perf_counter()
    photos = photo_like_set(crops, seed)
    made = time.perf_counter()
    decoded = [decode_image(data) for data, _ in photos]
    preprocessed = [to_fashion_mnist(image) for image in decoded]
    done = time.perf_counter()
    baseline = [plain_resize(image) for image in decoded]

    def accuracy(batch: list[np.ndarray] | np.ndarray) -> np.ndarray:
        predicted = classifier.logits(to_model_input(batch)).argmax(axis=1)
        return predicted == labels

    hits_original, hits_photo, hits_plain = (
        accuracy(crops),
        accuracy(preprocessed),
        accuracy(baseline),
    )
    formats = np.array([fmt for _, fmt in photos])
    return {
        "model": str(model_path),
        "model_sha256": classifier.info.sha256,
        "images": n,
        "seed": seed,
        "accuracy_original": round(float(hits_original.mean()), 4),
        "accuracy_photo_like": round(float(hits_photo.mean()), 4),
        "ratio": round(float(hits_photo.mean() / max(hits_original.mean(), 1e-9)), 4),
        "accuracy_plain_resize": round(float(hits_plain.mean()), 4),
        "goal_ratio": GOAL,
        "accuracy_photo_like_by_format": {
            str(f): round(float(hits_photo[formats == f].mean()), 4) for f in np.unique(formats)
        },
        "ms_per_image_preprocess": round(1000 * (done - made) / n, 2),
        "seconds_making_photos": round(made - start, 1),
    }


def print_table(result: dict) -> None:
    rows = [
        ("28×28 originals", result["accuracy_original"]),
        ("photo-like, our preprocessing", result["accuracy_photo_like"]),
        ("photo-like, plain resize", result["accuracy_plain_resize"]),
    ]
    print(f"{result['model']}  ({result['images']} test images, seed {result['seed']})")
    for name, value in rows:
        print(f"  {name:<32} {value:.4f}")
    verdict = "meets" if result["ratio"] >= result["goal_ratio"] else "MISSES"
    name = "ratio photo-like / original"
    print(f"  {name:<32} {result['ratio']:.4f}  ({verdict} the goal ≥ {GOAL})")
    print(f"  preprocessing {result['ms_per_image_preprocess']} ms/image (decode + crop)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/cnn.onnx"))
    parser.add_argument(
        "--n", type=int, default=2000, help="test images (default 2000; 10000 = all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--data-dir", type=Path, help="directory with the four .gz files")
    args = parser.parse_args(argv)
    result = evaluate(args.model, args.n, args.seed, args.data_dir)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if result["ratio"] >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
