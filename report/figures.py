"""The figures step: every PNG that report.json names, drawn from report.json's own numbers
(charts) and from the compute step's `FigureInputs` (the galleries' pixels, the sample sprite,
the full risk–coverage curve). matplotlib's object API on the Agg canvas, no pyplot state;
galleries with Pillow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from report.figure_inputs import FigureInputs, Gallery, short

DPI = 110


def draw(r: dict, inputs: FigureInputs, out: Path) -> list[Path]:
    """Write every figure `r` (the report dict) names into `out`; return the files written."""
    written = []
    if name := r["data"]["figures"]["samples"]:
        written.append(sprite(inputs.sample_images, inputs.sample_labels, r["classes"], 10, out / name))
    if r["model"]["run"]:
        written.append(learning_curves(r["model"]["run"]["history"], out / r["model"]["run"]["figure"]))
    cm = np.asarray(r["confusion"]["matrix"])
    written.append(confusion_heatmaps(cm, r["classes"], out / r["confusion"]["figure"]))
    cal = r["calibration"]
    written.append(reliability(cal["bins"], cal["bins_scaled"], cal["temperature"], out / cal["figure"]))
    rb = r["robustness"]
    have_base = rb["mce"] is not None
    written.append(
        robustness(
            rb["severities"],
            {row["label"]: row["accuracy"] for row in rb["rows"]},
            {row["label"]: row["baseline_accuracy"] for row in rb["rows"]} if have_base else None,
            out / rb["figure"],
        )
    )
    se = r["selective"]
    coverage, accuracy = inputs.risk_coverage
    point = (se["test_coverage"], se["test_accuracy"]) if se["test_accuracy"] is not None else None
    written.append(risk_coverage(coverage, accuracy, point, se["target"], out / se["figure"]))
    galleries = [
        (r["confusion"]["pairs_figure"], "confused_pairs"),
        *((r["failures"][key]["figure"], key) for key in ("confident_errors", "per_class_errors", "unsure_correct")),
        (r["label_issues"]["figure"], "label_issues"),
        (r["photo_like"].get("figure"), "photo_like"),
        ((r.get("photo_styles") or {}).get("figure"), "photo_styles"),
        ((r["comparison"] or {}).get("figure"), "disagreements"),
        ((r.get("wardrobe") or {}).get("figure"), "wardrobe_changes"),
    ]
    for name, key in galleries:
        if name:
            if key not in inputs.galleries:
                raise ValueError(f"report.json names the figure {name} but the compute step gave no pixels for it")
            written.append(gallery(inputs.galleries[key], out / name))
    return written


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def gallery(cells: Gallery, path: Path, zoom: int = 3) -> Path:
    """A grid of 28x28 crops with a caption above each (the course's t=..., p=... style);
    None leaves a cell blank. Drawn with Pillow: a matplotlib axes per crop took seconds."""
    images, captions, ncols = cells.crops, cells.captions, cells.ncols
    font = ImageFont.load_default(size=11)
    line = 13
    side = 28 * zoom
    lines = max((c.count("\n") + 1 for c in captions), default=1)
    cell_w, cell_h = side + 36, side + lines * line + 10
    nrows = max(-(-len(images) // ncols), 1)
    canvas = Image.new("RGB", (ncols * cell_w, nrows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
        if image is None:
            continue
        x, y = (i % ncols) * cell_w, (i // ncols) * cell_h
        for j, text in enumerate(caption.split("\n")):
            width = draw.textlength(text, font=font)
            draw.text((x + (cell_w - width) / 2, y + 2 + j * line), text, fill="black", font=font)
        crop = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((side, side), Image.NEAREST)
        canvas.paste(crop, (x + 18, y + lines * line + 6))
    canvas.save(path, optimize=True)
    return path


def sprite(images: np.ndarray, labels: np.ndarray, classes: Sequence[str], per_class: int, path: Path) -> Path:
    """One row of sample images per class, the class name on the left."""
    fig = Figure(figsize=(per_class * 0.6 + 1.4, len(classes) * 0.62))
    for c, name in enumerate(classes):
        picks = np.nonzero(labels == c)[0][:per_class]
        row = np.concatenate([images[i] for i in picks], axis=1)
        ax = fig.add_subplot(len(classes), 1, c + 1)
        ax.imshow(row, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(hspace=0.05)
    return _save(fig, path)


def learning_curves(rows: Sequence[dict], path: Path) -> Path:
    """Loss and accuracy per epoch, train and validation (from a run's metrics.jsonl)."""
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(9, 3))
    for i, (key, label) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in rows], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def confusion_heatmaps(cm: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    """Counts and row-normalised rates side by side, values written in the cells."""
    cm = np.asarray(cm)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    names = [short(c) for c in classes]
    fig = Figure(figsize=(14, 6))
    for i, (values, title, fmt) in enumerate(
        ((cm, "counts", "{:d}"), (rates, "row-normalised (recall on the diagonal)", "{:.2f}"))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for (r, c), v in np.ndenumerate(values):
            ax.text(
                c,
                r,
                fmt.format(v),
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if rates[r, c] > 0.5 else "black",
            )
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def reliability(before: dict, after: dict, temperature: float, path: Path) -> Path:
    """Reliability diagrams (accuracy per confidence bin against the diagonal), before and
    after temperature scaling."""
    fig = Figure(figsize=(9, 3.8))
    for i, (bins, title) in enumerate(((before, "as shipped"), (after, f"temperature scaled (T = {temperature:.3f})"))):
        ax = fig.add_subplot(1, 2, i + 1)
        k = bins["bins"]
        centres = (np.arange(k) + 0.5) / k
        count = np.asarray(bins["count"])
        acc = np.where(count > 0, bins["accuracy"], np.nan)
        conf = np.where(count > 0, bins["confidence"], np.nan)
        ax.bar(centres, acc, width=1 / k, edgecolor="black", alpha=0.7, label="accuracy")
        ax.bar(
            centres,
            conf - acc,
            bottom=acc,
            width=1 / k,
            color="red",
            alpha=0.3,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}: ECE {bins['ece']:.4f}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def robustness(
    severities: Sequence[int],
    accuracy: dict[str, Sequence[float]],
    baseline: dict[str, Sequence[float]] | None,
    path: Path,
) -> Path:
    """Accuracy against severity, one line per corruption, keyed by its label (the baseline
    model dashed)."""
    fig = Figure(figsize=(9, 4.2))
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(accuracy))]
    for (name, values), colour in zip(accuracy.items(), colours, strict=True):
        ax.plot(severities, values, marker="o", ms=3, color=colour, label=name)
        if baseline is not None:
            ax.plot(severities, baseline[name], ls="--", lw=0.8, color=colour)
    ax.set_xticks(list(severities))
    ax.set_xlabel("severity (0 = clean)" + ("; dashed: baseline model" if baseline else ""))
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    return _save(fig, path)


def risk_coverage(
    coverage: np.ndarray,
    accuracy: np.ndarray,
    point: tuple[float, float] | None,
    target: float,
    path: Path,
) -> Path:
    """Accuracy of the answers kept against the fraction kept, with the chosen operating point."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    ax.plot(coverage, accuracy, lw=1.5)
    ax.axhline(target, color="grey", ls=":", lw=1)
    if point is not None:
        ax.plot([point[0]], [point[1]], "ro", label="threshold chosen on validation")
        ax.legend(fontsize=8, loc="lower left")
    ax.set_xlabel("coverage (fraction answered)")
    ax.set_ylabel("accuracy of answered")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    return _save(fig, path)
