"""How the model holds up off the clean test set: seeded MNIST-C-style corruptions against a
pinned baseline (corruption error as in ImageNet-C), synthetic photo-like uploads (test
crops put through the inverse of our own preprocessing, `photo_sim.photolike`) and every photo
style of `photo_sim.photo_styles` (home snapshots), read back through the service's
preprocessing. Numbers only; the figures are drawn from them afterwards."""

from __future__ import annotations

import numpy as np

from contract.preprocess import decode_image, to_fashion_mnist, to_model_input
from contract.runtime import softmax
from photo_sim.photo_styles import DESCRIPTIONS, STYLES, style_scores, style_set
from photo_sim.photolike import photo_like_set
from report import corruptions, metrics, story
from report.figure_inputs import FigureInputs, Gallery, caption
from training.progress import bar


def seeded_subset(n: int, size: int | None, rng_seed: int) -> np.ndarray:
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(rng_seed).choice(n, size=size, replace=False))


def robustness_section(model, baseline, images, labels, pred, s) -> dict:
    idx = seeded_subset(len(labels), s.robustness_images, s.seed + 2)
    sub, sub_labels = images[idx], labels[idx]
    names = list(corruptions.CORRUPTIONS)
    levels = [0, *corruptions.SEVERITIES]
    acc = {name: [] for name in names}
    base_acc = {name: [] for name in names} if baseline is not None else None
    clean = {"model": float((pred[idx] == sub_labels).mean())}  # already predicted
    if baseline is not None:
        clean["baseline"] = float((baseline.logits(to_model_input(sub)).argmax(1) == sub_labels).mean())
    n = len(sub)
    for name in bar(names, desc="corruptions", leave=False, disable=not s.progress):
        # all five severities in one call: fewer, larger batches run faster in onnxruntime
        x = to_model_input(np.concatenate([corruptions.corrupt(sub, name, v, s.seed) for v in corruptions.SEVERITIES]))
        right = (model.logits(x).argmax(1) == np.tile(sub_labels, len(corruptions.SEVERITIES))).reshape(-1, n)
        acc[name] = [clean["model"], *right.mean(1).tolist()]
        if base_acc is not None:
            base_right = baseline.logits(x).argmax(1) == np.tile(sub_labels, len(corruptions.SEVERITIES))
            base_acc[name] = [clean["baseline"], *base_right.reshape(-1, n).mean(1).tolist()]
    rows = []
    for name in names:
        row = {
            "corruption": name,
            "label": name.replace("_", " "),
            "accuracy": acc[name],
            "mean_accuracy": float(np.mean(acc[name][1:])),
        }
        if base_acc is not None:
            row["baseline_accuracy"] = base_acc[name]
            row.update(metrics.corruption_error(acc[name], base_acc[name]))
        rows.append(row)
    have_base = base_acc is not None
    mce, relative_mce = metrics.mean_corruption_error(rows) if have_base else (None, None)
    return {
        "images": len(idx),
        "severities": levels,
        "clean_accuracy": clean["model"],
        "baseline_clean_accuracy": clean.get("baseline"),
        "baseline_model": story.repo_relative(baseline.info.path) if have_base else None,
        "mean_corrupted_accuracy": float(np.mean([row["mean_accuracy"] for row in rows])),
        "mce": mce,
        "relative_mce": relative_mce,
        "rows": rows,
        "figure": "robustness.png",
    }


def photo_section(model, images, labels, test_pred, classes, s, fig: FigureInputs) -> dict:
    idx = seeded_subset(len(labels), s.photo_images, s.seed + 3)
    if len(idx) == 0:
        return {"available": False, "reason": "no images requested", "accuracy": None}
    uploads = photo_like_set(images[idx], s.seed)
    crops = [
        to_fashion_mnist(decode_image(data))
        for data, _ in bar(uploads, desc="photo-like", leave=False, disable=not s.progress)
    ]
    probs = softmax(model.logits(to_model_input(crops)), dtype=np.float64)
    pred = probs.argmax(1)
    sub_labels = labels[idx]
    shown = np.arange(min(16, len(idx)))
    fig.galleries["photo_like"] = Gallery(
        [crops[i] for i in shown], [caption(sub_labels[i], pred[i], probs[i].max(), classes) for i in shown]
    )
    formats = sorted({fmt for _, fmt in uploads})
    return {
        "available": True,
        "images": len(idx),
        "accuracy": float((pred == sub_labels).mean()),
        "crop_accuracy": float((test_pred[idx] == sub_labels).mean()),
        "formats": formats,
        "figure": "photo_like.png",
    }


def styles_section(model, images, labels, classes, s, fig: FigureInputs) -> dict:
    """Every photo style (photo_sim/photo_styles.py) on the same seeded test images: accuracy with
    its Wilson interval, the share marked `unsure` and the accuracy of the other answers."""
    idx = seeded_subset(len(labels), s.style_images, s.seed + 4)
    if len(idx) == 0:
        return {"available": False, "reason": "no images requested"}
    rows, crops, captions = [], [], []
    shown = min(8, len(idx))
    for k, style in enumerate(bar(list(STYLES), desc="photo styles", leave=False, disable=not s.progress)):
        scores = style_scores(model, style_set(style, images[idx], s.seed + 10 + k), labels[idx])
        rows.append(
            {"style": style, "description": DESCRIPTIONS[style]}
            | {key: value for key, value in scores.items() if key not in ("crops", "predicted", "confidence")}
        )
        crops += scores["crops"][:shown]
        captions += [
            caption(labels[idx][i], scores["predicted"][i], scores["confidence"][i], classes) for i in range(shown)
        ]
    fig.galleries["photo_styles"] = Gallery(crops, captions, ncols=shown)
    return {"available": True, "images_per_style": len(idx), "rows": rows, "figure": "photo_styles.png"}
