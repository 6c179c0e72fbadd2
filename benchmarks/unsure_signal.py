"""Does a second signal beside the softmax make the answers not marked `unsure` right on unseen styles?

    .venv/bin/python -m benchmarks.unsure_signal [--n 200] [--model PATH] [--target 0.97]

A measurement, not yet the service's rule (docs/benchmarks.md, "Unsure on unseen styles").
The question (issue 28, item 4): on photo styles nobody trained or tuned for, the softmax's
`unsure` leaves confident answers that are often wrong. Two candidate second signals are fitted
here, each a logistic regression that predicts "this answer is right" from

- `crop+softmax`: what the service holds today for every answer: the 28×28 input compared with
  the training inputs (PCA reconstruction error, Mahalanobis distance in a 40-dimensional PCA
  projection, the same to the predicted class's mean, share and mean of lit pixels) and the
  logits (log-odds of the top class, the runner-up's probability, entropy, logsumexp energy);
- `+isolator`: those and the isolator's own view of the photo (contract/isolate.py): the share of
  the frame kept, the share that stood out, how much of it was cut away, components found and
  kept, how much of the frame's edge the mask covers, the share of the border that was not
  background, the garment's colour distance and contrast, how full its box is, and the border's
  own noise in both. The service does not have these yet: they are read here by recording what
  `garment_mask` returns, photo by photo.

Fitted on the Fashion-MNIST validation split (the model's own, from its metadata) and on
validation images rendered in every TUNING_STYLE with its tuning seed; the threshold on the
signal is the lowest at which every tuning style's non-unsure answers reach `--target`. Then
measured, with the softmax threshold the model records, on the test split: Fashion-MNIST itself
and every style with its reported seed, the EVALUATION_ONLY styles (photo_sim/eval_photos.py)
included. Writes benchmarks/results/unsure_signal.json.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

import contract.isolate as isolate
from benchmarks.photo_styles import REPORTED_SEEDS, TUNING_SEEDS
from contract.files import write_json
from contract.metadata import source_commit, validation_split
from contract.preprocess import decode_image, to_fashion_mnist, to_model_input
from contract.runtime import load_model, softmax
from contract.split import stratified_split
from photo_sim.photo_styles import EVALUATION_ONLY, STYLES, TUNING_STYLES, style_set
from service.model_choice import choose_model
from training.fashion_mnist import load

RESULTS = Path(__file__).resolve().parent / "results" / "unsure_signal.json"
COMPONENTS = 40
"""PCA components of the training inputs (28×28 = 784 pixels)."""
CROP_FEATURES = ("log_odds", "runner_up", "entropy", "energy", "pca_error", "mahalanobis", "class_mahalanobis",
                 "lit_share", "mean")  # fmt: skip
ISOLATOR_FEATURES = ("kept_share", "found_share", "cut_share", "found_parts", "kept_parts", "edge_share",
                     "border_not_background", "colour_distance", "contrast", "box_fill", "border_colour_noise",
                     "border_contrast_noise")  # fmt: skip


@contextlib.contextmanager
def recorded_isolation(records: list):
    """While active, every garment mask the isolator makes appends its diagnostics to `records`."""
    made = isolate.garment_mask

    def recording(rgb, level, contrast):
        mask = made(rgb, level, contrast)
        border = isolate._border_mask(*level.shape)
        background = border & (contrast <= np.quantile(contrast[border], isolate.USUAL) + isolate.TRIM)
        distance = isolate.colour_distance(rgb, level, background)
        found = isolate._stands_out(distance, background, isolate.MIN_DISTANCE)
        found |= isolate._stands_out(contrast, background, isolate.TRIM)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) if len(rows) else 1
        inside = (lambda v: float(np.median(v[mask]))) if mask.any() else (lambda v: 0.0)
        records.append([mask.mean(), found.mean(), (found & ~mask).sum() / max(1, found.sum()),
                        ndimage.label(found)[1], ndimage.label(mask)[1],
                        mask[isolate._border_mask(*mask.shape, 2)].mean(), 1 - background.sum() / border.sum(),
                        inside(distance), inside(contrast), mask.sum() / box,
                        float(np.quantile(distance[background], 0.99)),
                        float(np.quantile(contrast[background], 0.99))])  # fmt: skip
        return mask

    isolate.garment_mask = recording
    try:
        yield records
    finally:
        isolate.garment_mask = made


def photographed(style: str, images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The crops the service makes of the style's photos of `images`, and the isolator's diagnostics."""
    crops, diagnostics = [], []
    with recorded_isolation([]) as records:
        for photo in style_set(style, images, seed):
            before = len(records)
            crops.append(to_fashion_mnist(decode_image(photo)))
            diagnostics.append(records[-1] if len(records) > before else [0.0] * len(ISOLATOR_FEATURES))
    return np.stack(crops), np.asarray(diagnostics, dtype=np.float64)


class InputDistance:
    """How far model inputs lie from the training inputs: a PCA of the training images."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int = 0):
        pixels = images.reshape(len(images), -1).astype(np.float32) / 255
        self.mean = pixels.mean(0)
        sample = pixels[np.random.default_rng(seed).choice(len(pixels), min(20000, len(pixels)), replace=False)]
        _, singular, vt = np.linalg.svd(sample - self.mean, full_matrices=False)
        self.components, self.variance = vt[:COMPONENTS], singular[:COMPONENTS] ** 2 / len(sample)
        projected = (pixels - self.mean) @ self.components.T
        self.class_means = np.stack([projected[labels == c].mean(0) for c in range(10)])

    def features(self, inputs: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """[N, len(CROP_FEATURES)] for model inputs [N, 1, 28, 28] and their logits."""
        pixels = inputs.reshape(len(inputs), -1)
        z = (pixels - self.mean) @ self.components.T
        error = np.sqrt((((pixels - self.mean) - z @ self.components) ** 2).sum(1))
        p = softmax(logits, dtype=np.float64)
        ranked = np.sort(p, axis=1)
        top = np.clip(ranked[:, -1], 1e-9, 1 - 1e-9)
        to_class = z - self.class_means[p.argmax(1)]
        return np.stack([np.log(top / (1 - top)), ranked[:, -2], -(p * np.log(p + 1e-12)).sum(1),
                         np.log(np.exp(logits.astype(np.float64)).sum(1)), error,
                         np.sqrt((z**2 / self.variance).sum(1)), np.sqrt((to_class**2 / self.variance).sum(1)),
                         (pixels > 0.05).mean(1), pixels.mean(1)], axis=1)  # fmt: skip


def _sure_figures(right: np.ndarray, sure: np.ndarray) -> dict:
    return {"coverage": round(float(sure.mean()), 4),
            "accuracy_when_sure": round(float(right[sure].mean()), 4) if sure.any() else None}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="ONNX model (default: what the service serves on CPU)")
    parser.add_argument("--n", type=int, default=200, help="photos per style and set (default 200)")
    parser.add_argument("--target", type=float, default=0.97, help="tuning styles' sure accuracy to reach")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    classifier = load_model(args.model or choose_model("cpu").path, device="cpu")
    threshold = classifier.info.unsure_threshold
    data = load(args.data_dir)
    recorded = validation_split(classifier.info.metadata)
    split = stratified_split(data.train_labels, recorded.val_size, recorded.seed)
    distance = InputDistance(data.train_images[split.train_indices], data.train_labels[split.train_indices])

    sets = {}  # name -> (crop features, isolator diagnostics, right, softmax-sure)
    confidence = {}

    def add(name: str, crops: np.ndarray, diagnostics: np.ndarray, labels: np.ndarray) -> None:
        inputs = to_model_input(crops)
        logits = classifier.logits(inputs)
        right = logits.argmax(1) == labels
        confidence[name] = softmax(logits).max(1)
        sure = confidence[name] >= threshold
        sets[name] = (distance.features(inputs, logits), diagnostics, right, sure)

    start = time.perf_counter()
    # Fashion-MNIST crops pass the isolator by: its diagnostics are those of a clean product photo's mask.
    clean = [1.0] + [0.0] * (len(ISOLATOR_FEATURES) - 1)
    val_images, val_labels = data.train_images[split.val_indices], data.train_labels[split.val_indices]
    for name, images, labels in (
        ("fmnist:val", val_images, val_labels),
        ("fmnist:test", data.test_images, data.test_labels),
    ):
        add(name, images, np.tile(clean, (len(labels), 1)), labels)
    for style in TUNING_STYLES:
        pick = np.sort(np.random.default_rng(TUNING_SEEDS[style]).choice(split.val_indices, args.n, replace=False))
        add(
            f"tune:{style}", *photographed(style, data.train_images[pick], TUNING_SEEDS[style]), data.train_labels[pick]
        )
    for style in STYLES:
        pick = np.sort(
            np.random.default_rng(REPORTED_SEEDS[style]).choice(len(data.test_labels), args.n, replace=False)
        )
        add(
            f"test:{style}", *photographed(style, data.test_images[pick], REPORTED_SEEDS[style]), data.test_labels[pick]
        )
    print(f"rendered and classified in {time.perf_counter() - start:.0f} s", flush=True)

    fit_on = ["fmnist:val"] + [f"tune:{style}" for style in TUNING_STYLES]
    signals = {}
    for signal, with_isolator in (("crop+softmax", False), ("+isolator", True)):

        def x_of(name: str, with_isolator: bool = with_isolator) -> np.ndarray:
            crop, diagnostics, _, _ = sets[name]
            return np.concatenate([crop, diagnostics], 1) if with_isolator else crop

        x = np.concatenate([x_of(name) for name in fit_on])
        y = np.concatenate([sets[name][2] for name in fit_on])
        # Each tuning style weighs as much as the validation split, whatever their sizes.
        weight = np.concatenate([np.full(len(sets[name][2]), 1 / len(sets[name][2])) for name in fit_on])
        centre, scale = x.mean(0), x.std(0) + 1e-6
        model = LogisticRegression(max_iter=5000).fit((x - centre) / scale, y, sample_weight=weight * len(y))
        score = {name: model.predict_proba((x_of(name) - centre) / scale)[:, 1] for name in sets}
        cut = next(
            (float(t) for t in np.round(np.linspace(0.0, 0.99, 100), 2)
             if all((ok := sets[n][3] & (score[n] >= t)).sum() == 0 or sets[n][2][ok].mean() >= args.target
                    for n in fit_on[1:])),
            0.99,
        )  # fmt: skip
        signals[signal] = {"threshold": cut, "score": score}
        print(f"{signal}: right-answer probability threshold {cut:.2f}", flush=True)

    # The fair comparison: the softmax alone, its threshold raised until the tuning styles reach the target.
    stricter = next(
        (float(t) for t in np.round(np.linspace(threshold, 0.9999, 200), 4)
         if all((ok := confidence[n] >= t).sum() == 0 or sets[n][2][ok].mean() >= args.target for n in fit_on[1:])),
        0.9999,
    )  # fmt: skip
    signals["softmax_stricter"] = {"threshold": stricter, "score": confidence}
    print(f"softmax alone: threshold {stricter:.4f} reaches the target on the tuning styles", flush=True)
    rows = []
    for name, (_, _, right, sure) in sets.items():
        row = {"set": name, "evaluation_only": name.split(":")[1] in EVALUATION_ONLY, "images": len(right),
               "accuracy": round(float(right.mean()), 4), "softmax_only": _sure_figures(right, sure)}  # fmt: skip
        for signal, fitted in signals.items():
            row[signal] = _sure_figures(right, sure & (fitted["score"][name] >= fitted["threshold"]))
        rows.append(row)
        line = "  ".join(
            f"{k} cov {row[k]['coverage']:.3f} acc "
            + (f"{row[k]['accuracy_when_sure']:.3f}" if row[k]["accuracy_when_sure"] is not None else "  -  ")
            for k in ("softmax_only", *signals)
        )
        print(f"  {name:<24} {line}", flush=True)
    write_json(
        {
            "command": f"python -m benchmarks.unsure_signal --n {args.n} --target {args.target}"
            + (f" --model {args.model}" if args.model else ""),
            "commit": source_commit(),
            "measured_at": time.strftime("%Y-%m-%d %H:%M"),
            "model": classifier.info.path.name,
            "model_sha256": classifier.info.sha256,
            "softmax_threshold": threshold,
            "fitted_on": fit_on,
            "target": args.target,
            "thresholds": {signal: fitted["threshold"] for signal, fitted in signals.items()},
            "rows": rows,
        },
        args.out,
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
