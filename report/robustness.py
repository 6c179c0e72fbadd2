"""How the model holds up off the clean test set: seeded MNIST-C-style corruptions against a
pinned baseline (corruption error as in ImageNet-C), and photo-like uploads read back through
the service's own preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from report import corruptions, figures, metrics, story


def as_input(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[:, None]


def seeded_subset(n: int, size: int | None, rng_seed: int) -> np.ndarray:
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(rng_seed).choice(n, size=size, replace=False))


def robustness_section(model, baseline, images, labels, pred, s, fig_dir: Path) -> dict:
    idx = seeded_subset(len(labels), s.robustness_images, s.seed + 2)
    sub, sub_labels = images[idx], labels[idx]
    names = list(corruptions.CORRUPTIONS)
    levels = [0, *corruptions.SEVERITIES]
    acc = {name: [] for name in names}
    base_acc = {name: [] for name in names} if baseline is not None else None
    clean = {"model": float((pred[idx] == sub_labels).mean())}  # already predicted
    if baseline is not None:
        clean["baseline"] = float((baseline.logits(as_input(sub)).argmax(1) == sub_labels).mean())
    n = len(sub)
    for name in tqdm(names, desc="corruptions", leave=False, disable=not s.progress):
        # all five severities in one call: fewer, larger batches run faster in onnxruntime
        x = as_input(np.concatenate([corruptions.corrupt(sub, name, v, s.seed) for v in corruptions.SEVERITIES]))
        right = (model.logits(x).argmax(1) == np.tile(sub_labels, len(corruptions.SEVERITIES))).reshape(-1, n)
        acc[name] = [clean["model"], *right.mean(1).tolist()]
        if base_acc is not None:
            base_right = baseline.logits(x).argmax(1) == np.tile(sub_labels, len(corruptions.SEVERITIES))
            base_acc[name] = [clean["baseline"], *base_right.reshape(-1, n).mean(1).tolist()]
    rows = []
    for name in names:
        err = 1 - np.array(acc[name][1:])
        row = {
            "corruption": name,
            "label": name.replace("_", " "),
            "accuracy": acc[name],
            "mean_accuracy": float(np.mean(acc[name][1:])),
        }
        if base_acc is not None:
            base_err = 1 - np.array(base_acc[name][1:])
            row["baseline_accuracy"] = base_acc[name]
            row["ce"] = float(err.sum() / max(base_err.sum(), 1e-12))
            # Relative CE divides by how much the baseline degrades; undefined when it barely does.
            base_drop = (base_err - (1 - clean["baseline"])).sum()
            drop = (err - (1 - clean["model"])).sum()
            row["relative_ce"] = float(drop / base_drop) if base_drop > 0.01 else None
        rows.append(row)
    figures.robustness(levels, acc, base_acc, fig_dir / "robustness.png")
    have_base = base_acc is not None
    return {
        "images": len(idx),
        "severities": levels,
        "clean_accuracy": clean["model"],
        "baseline_clean_accuracy": clean.get("baseline"),
        "baseline_model": story.repo_relative(s.baseline_model) if have_base else None,
        "mean_corrupted_accuracy": float(np.mean([row["mean_accuracy"] for row in rows])),
        "mce": float(np.mean([row["ce"] for row in rows])) if have_base else None,
        "relative_mce": (
            float(np.mean([row["relative_ce"] for row in rows]))
            if have_base and all(row["relative_ce"] is not None for row in rows)
            else None
        ),
        "rows": rows,
        "figure": "robustness.png",
    }


def photo_section(model, images, labels, test_pred, classes, s, fig_dir: Path) -> dict:
    try:
        from contract.preprocess import decode_image, to_fashion_mnist, to_model_input
        from report.photolike import photo_like_set
    except ImportError as exc:
        return {
            "available": False,
            "reason": f"photo-like check unavailable ({exc})",
            "accuracy": None,
        }
    idx = seeded_subset(len(labels), s.photo_images, s.seed + 3)
    if len(idx) == 0:
        return {"available": False, "reason": "no images requested", "accuracy": None}
    uploads = photo_like_set(images[idx], s.seed)
    crops = [
        to_fashion_mnist(decode_image(data))
        for data, _ in tqdm(uploads, desc="photo-like", leave=False, disable=not s.progress)
    ]
    probs = metrics.softmax(model.logits(to_model_input(crops)))
    pred = probs.argmax(1)
    sub_labels = labels[idx]
    shown = np.arange(min(16, len(idx)))
    captions = [figures.caption(sub_labels[i], pred[i], probs[i].max(), classes) for i in shown]
    figures.gallery(np.stack([crops[i] for i in shown]), captions, fig_dir / "photo_like.png")
    formats = sorted({fmt for _, fmt in uploads})
    return {
        "available": True,
        "images": len(idx),
        "accuracy": float((pred == sub_labels).mean()),
        "crop_accuracy": float((test_pred[idx] == sub_labels).mean()),
        "formats": formats,
        "figure": "photo_like.png",
    }
