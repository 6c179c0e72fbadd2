"""The compute step: evaluate a loaded model and return every number of the report (the dict
that becomes report.json) and, apart from it, the pixels the figures need (`FigureInputs`).
Nothing here draws or writes a file; `report.figures` and `report.render` do that afterwards.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from contract import calibration, stats
from contract.metadata import source_commit
from contract.preprocess import to_model_input
from contract.runtime import Classifier, softmax
from contract.split import stratified_split
from report import corruptions, label_issues, metrics, robustness, story
from report.figure_inputs import FigureInputs, Gallery, caption, short
from report.robustness import seeded_subset
from training.fashion_mnist import FashionMNIST
from training.progress import bar
from training.wardrobe_data import WardrobeItems

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ReportSettings:
    """How much to evaluate and how; the defaults make the shipped report."""

    limit: int | None = None
    """Evaluate a seeded subset of this many test images (None: all 10,000)."""
    val_limit: int | None = None
    """Fit temperature and the abstention threshold on this many validation images (None: all)."""
    robustness_images: int = 300
    """Seeded subset of the evaluated test images for the 55 corruption passes (speed)."""
    photo_images: int = 200
    """Test images made into synthetic photo-like uploads, read back through the service's preprocessing."""
    style_images: int = 100
    """Test images photographed in each photo style (photo_sim/photo_styles.py), read back the same way."""
    bootstrap_resamples: int = 1000
    ci_level: float = 0.95
    ece_bins: int = 15
    target_accuracy: float = 0.99
    """Selective prediction: the accuracy the answered items must reach."""
    label_flip_fraction: float = 0.02
    """Fraction of test labels flipped to check that confident learning finds planted errors."""
    gallery_size: int = 24
    errors_per_class: int = 4
    confused_pairs: int = 5
    seed: int = 0
    baseline_model: Path | None = field(default_factory=lambda: REPO / "models" / "mlp.onnx")
    """The pinned baseline for the corruption error (mCE); skipped when the file is missing."""
    ablation: Path | None = field(default_factory=lambda: REPO / "benchmarks" / "results" / "ablation.json")
    ablation_cnn: Path | None = field(default_factory=lambda: REPO / "benchmarks" / "results" / "ablation-cnn.json")
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in (
            "robustness_images",
            "photo_images",
            "style_images",
            "bootstrap_resamples",
            "ece_bins",
            "gallery_size",
            "errors_per_class",
            "confused_pairs",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)!r}")
        if self.limit is not None and self.limit < 10:
            raise ValueError(f"limit must be at least 10 test images, got {self.limit!r}")
        if not 0 < self.ci_level < 1 or not 0 < self.target_accuracy <= 1:
            raise ValueError("ci_level and target_accuracy must be in (0, 1]")


@dataclass(frozen=True)
class Context:
    """What one report is about, loaded once by the caller and handed down."""

    model: Classifier
    data: FashionMNIST
    compare: Classifier | None = None
    """A second model to compare against (--compare)."""
    baseline: Classifier | None = None
    """The pinned baseline of the corruption error (settings.baseline_model, when present)."""
    run: dict | None = None
    """The training run log (`story.read_run`), for the learning curves."""
    wardrobe: tuple[WardrobeItems, str] | None = None
    """The person's held-out wardrobe items (--wardrobe) and a sentence saying which they are."""
    command: str = ""


class Stages:
    """The report's stages under one progress bar, each one's seconds recorded."""

    NAMES = ("loading", "inference", "story", "evaluation", "calibration", "label issues", "robustness",
             "photo-like", "photo styles", "selective prediction", "comparison", "wardrobe", "figures",
             "done")  # fmt: skip

    def __init__(self, progress: bool):
        self.started = self.mark = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.bar = bar(total=len(self.NAMES) - 1, desc="report", disable=not progress)
        self.bar.set_postfix_str(self.NAMES[0])

    def done(self, finished: str) -> None:
        """Tick off a stage (recording its time) and name the next one."""
        now = time.perf_counter()
        self.seconds[finished] = round(now - self.mark, 2)
        self.mark = now
        self.bar.set_postfix_str(self.NAMES[self.NAMES.index(finished) + 1])  # the stage now running
        self.bar.update(1)

    def timing(self) -> dict:
        return {"seconds": round(time.perf_counter() - self.started, 2), "stages": dict(self.seconds)}

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


def predict(model: Classifier, images: np.ndarray, desc: str, progress: bool) -> np.ndarray:
    """Logits for uint8 [N, 28, 28] images, in batches under a progress bar."""
    batch = 2000
    out = [
        model.logits(to_model_input(images[i : i + batch]))
        for i in bar(range(0, len(images), batch), desc=desc, leave=False, disable=not progress)
    ]
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def compute(ctx: Context, s: ReportSettings, stages: Stages) -> tuple[dict, FigureInputs]:
    """Every number of the report of `ctx.model` on Fashion-MNIST's test set, and the figure inputs.
    The caller has loaded everything (the "loading" stage); `stages` ticks off the rest up to
    "comparison"."""
    model, ds = ctx.model, ctx.data
    classes = list(model.classes)
    k = len(classes)
    meta = model.info.metadata
    config = story.training_config(model.info, ctx.run)
    val_size, split_seed = story.recorded_split(model.info)
    split = stratified_split(ds.train_labels, val_size=val_size, seed=split_seed)

    test_idx = seeded_subset(len(ds.test_labels), s.limit, s.seed)
    images, labels = ds.test_images[test_idx], ds.test_labels[test_idx]
    val_idx = split.val_indices[seeded_subset(len(split.val_indices), s.val_limit, s.seed + 1)]
    logits = predict(model, images, "test", s.progress)
    val_logits = predict(model, ds.train_images[val_idx], "validation", s.progress)
    val_labels = ds.train_labels[val_idx]
    probs = softmax(logits, dtype=np.float64)
    pred, conf = probs.argmax(1), probs.max(1)
    correct = pred == labels
    stages.done("inference")

    fig = FigureInputs(sample_images=ds.test_images, sample_labels=ds.test_labels)
    r: dict = {"title": f"Evaluation report: {model.info.path.name}", "classes": classes}
    r["settings"] = {key: (story.repo_relative(v) if isinstance(v, Path) else v) for key, v in asdict(s).items()}
    r["settings"].update(
        image_size=28,
        val_size=val_size,
        split_seed=split_seed,
        severities=len(corruptions.SEVERITIES),
        corruption_kinds=len(corruptions.CORRUPTIONS),
    )
    r["data"] = story.data_section(ds, split, classes)
    r["model"] = story.model_section(model.info, config, ctx.run)
    stages.done("story")

    summary = metrics.classification_summary(labels, pred, k, s.bootstrap_resamples, s.seed, s.ci_level)
    for row, name in zip(summary["per_class"], classes, strict=True):
        row["class"] = name
    cm = np.asarray(summary.pop("confusion"))
    r["evaluation"] = summary
    r["evaluation"]["baseline"] = metrics.most_frequent_baseline(ds.train_labels, labels)
    r["evaluation"]["baseline"]["class"] = classes[r["evaluation"]["baseline"]["class_id"]]
    r["evaluation"]["errors"] = int((~correct).sum())
    r["confusion"] = _confusion_section(cm, images, labels, pred, conf, classes, s, fig)
    r["failures"] = _failures_section(images, labels, pred, conf, classes, s, fig)
    stages.done("evaluation")

    r["calibration"] = _calibration_section(logits, labels, val_logits, val_labels, s)
    stages.done("calibration")
    r["label_issues"] = _label_issue_section(images, labels, probs, classes, s, fig)
    stages.done("label issues")
    r["robustness"] = robustness.robustness_section(model, ctx.baseline, images, labels, pred, s)
    stages.done("robustness")
    r["photo_like"] = robustness.photo_section(model, images, labels, pred, classes, s, fig)
    stages.done("photo-like")
    r["photo_styles"] = robustness.styles_section(model, images, labels, classes, s, fig)
    stages.done("photo styles")
    r["selective"] = _selective_section(conf, correct, val_logits, val_labels, s, fig)
    stages.done("selective prediction")
    r["comparison"] = None
    if ctx.compare is not None:
        r["comparison"] = _comparison_section(ctx.compare, images, labels, correct, probs, classes, s, fig)
    stages.done("comparison")
    r["wardrobe"] = None
    if ctx.wardrobe is not None:
        r["wardrobe"] = _wardrobe_section(model, ctx.compare, *ctx.wardrobe, classes, s, fig)
    stages.done("wardrobe")
    r["ablation"] = story.ablation_section(s.ablation)
    r["ablation_cnn"] = story.ablation_section(s.ablation_cnn)
    r["provenance"] = {
        "model_path": str(model.info.path),
        "model_sha256": model.info.sha256,
        "metadata": [[key, value] for key, value in sorted(meta.items())],
        "dataset_checksum": ds.checksum,
        "dataset_source": str(ds.source),
        "dataset_files": ds.sha256,
        "command": ctx.command,
        "source_commit": source_commit(),
        "providers": list(model.info.providers),
        "python": platform.python_version(),
        "compare_sha256": ctx.compare.info.sha256 if ctx.compare else None,
        "baseline_sha256": ctx.baseline.info.sha256 if ctx.baseline else None,
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    r["gates"] = {
        "accuracy": r["evaluation"]["accuracy"],
        "macro_f1": r["evaluation"]["macro_f1"],
        "ece": r["calibration"]["ece"],
        "ece_scaled": r["calibration"]["ece_scaled"],
        "mce": r["robustness"]["mce"],
        "photo_accuracy": r["photo_like"]["accuracy"] if r["photo_like"]["available"] else None,
        "coverage_at_target": r["selective"]["test_coverage"],
        "label_issues": r["label_issues"]["count"],
        "wardrobe_accuracy": r["wardrobe"]["accuracy"] if r["wardrobe"] else None,
        "wardrobe_gain": r["wardrobe"]["gain"] if r["wardrobe"] else None,
    }
    return r, fig


# ---------------------------------------------------------------------------
# Sections: numbers into the report, pixels into the figure inputs


def _confusion_section(cm, images, labels, pred, conf, classes, s, fig: FigureInputs) -> dict:
    pairs = metrics.top_confused_pairs(cm, s.confused_pairs)
    shown, captions = [], []
    per_pair = 8
    for pair in pairs:
        pair["true_class"], pair["predicted_class"] = (
            classes[pair["true"]],
            classes[pair["predicted"]],
        )
        hits = np.nonzero((labels == pair["true"]) & (pred == pair["predicted"]))[0]
        hits = hits[np.argsort(-conf[hits], kind="stable")][:per_pair]
        for j in range(per_pair):
            if j < len(hits):
                shown.append(images[hits[j]])
                captions.append(caption(labels[hits[j]], pred[hits[j]], conf[hits[j]], classes))
            else:
                shown.append(None)
                captions.append("")
    if pairs:
        fig.galleries["confused_pairs"] = Gallery(shown, captions, ncols=per_pair)
    return {
        "matrix": cm.tolist(),
        "top_pairs": pairs,
        "figure": "confusion.png",
        "pairs_figure": "confused_pairs.png" if pairs else None,
    }


def _failures_section(images, labels, pred, conf, classes, s, fig: FigureInputs) -> dict:
    wrong = np.nonzero(pred != labels)[0]
    right = np.nonzero(pred == labels)[0]
    worst = wrong[np.argsort(-conf[wrong], kind="stable")][: s.gallery_size]
    unsure = right[np.argsort(conf[right], kind="stable")][: s.gallery_size]
    per_class = []  # errors_per_class cells per class, blank where a class has fewer errors
    for c in range(len(classes)):
        mine = wrong[labels[wrong] == c]
        mine = mine[np.argsort(-conf[mine], kind="stable")][: s.errors_per_class].tolist()
        per_class += mine + [-1] * (s.errors_per_class - len(mine))
    out = {}
    for key, idx in (
        ("confident_errors", worst),
        ("per_class_errors", np.array(per_class, int)),
        ("unsure_correct", unsure),
    ):
        real = idx[idx >= 0]
        if len(real):
            fig.galleries[key] = Gallery(
                [images[i] if i >= 0 else None for i in idx],
                [caption(labels[i], pred[i], conf[i], classes) if i >= 0 else "" for i in idx],
                ncols=2 * s.errors_per_class if key == "per_class_errors" else 8,
            )
        out[key] = {
            "count": len(real),
            "figure": f"{key}.png" if len(real) else None,
            "mean_confidence": float(conf[real].mean()) if len(real) else None,
        }
    out["confident_threshold"] = 0.9
    out["errors_above_90"] = int(np.sum(conf[wrong] >= 0.9))
    return out


def confidence_word(temperature: float) -> str:
    """The judgement the fitted temperature makes: T > 1 softens over-confident answers, T < 1
    sharpens under-confident ones; within 5% of 1 the confidences are left as they are."""
    if temperature > 1.05:
        return "over-confident"
    if temperature < 0.95:
        return "under-confident"
    return "about right in its confidence"


def _calibration_section(logits, labels, val_logits, val_labels, s) -> dict:
    temperature = calibration.fit_temperature(val_logits, val_labels)
    before = calibration.calibration_bins(softmax(logits, dtype=np.float64), labels, s.ece_bins)
    after = calibration.calibration_bins(softmax(logits, temperature, dtype=np.float64), labels, s.ece_bins)
    return {
        "temperature": temperature,
        "verdict": confidence_word(temperature),
        "ece": before["ece"],
        "ece_scaled": after["ece"],
        "nll": calibration.negative_log_likelihood(logits, labels),
        "nll_scaled": calibration.negative_log_likelihood(logits, labels, temperature),
        "val_images": len(val_labels),
        "bins": before,
        "bins_scaled": after,
        "figure": "reliability.png",
    }


def _label_issue_section(images, labels, probs, classes, s, fig: FigureInputs) -> dict:
    found = label_issues.find_label_issues(labels, probs)
    top = found[: s.gallery_size]
    if len(top):
        fig.galleries["label_issues"] = Gallery(
            list(images[top]),
            [f"t={short(classes[labels[i]])}\np={short(classes[probs[i].argmax()])} {probs[i].max():.2f}" for i in top],
        )
    planted = label_issues.planted_flip_recovery(labels, probs, s.label_flip_fraction, s.seed)
    return {
        "count": len(found),
        "share": len(found) / len(labels),
        "top": [
            {
                "index": int(i),
                "given": classes[labels[i]],
                "suggested": classes[probs[i].argmax()],
                "given_probability": float(probs[i, labels[i]]),
            }
            for i in top
        ],
        "planted": planted,
        "figure": "label_issues.png" if len(top) else None,
    }


def _selective_section(conf, correct, val_logits, val_labels, s, fig: FigureInputs) -> dict:
    val_probs = softmax(val_logits, dtype=np.float64)
    val_correct = val_probs.argmax(1) == val_labels
    threshold = stats.threshold_for_accuracy(val_probs.max(1), val_correct, s.target_accuracy)
    curve = stats.risk_coverage(conf, correct.astype(np.float64))
    at = metrics.selective_at(conf, correct, threshold) if threshold is not None else None
    fig.risk_coverage = (curve["coverage"], curve["accuracy"])
    grid = np.linspace(0.05, 1, 20)
    at_grid = np.searchsorted(curve["coverage"], grid - 1e-12)
    return {
        "target": s.target_accuracy,
        "threshold": threshold,
        "val_coverage": metrics.selective_at(val_probs.max(1), val_correct, threshold)["coverage"]
        if threshold is not None
        else None,
        "test_coverage": at["coverage"] if at else None,
        "test_accuracy": at["accuracy"] if at and at["coverage"] > 0 else None,
        "abstained": int(round((1 - at["coverage"]) * len(conf))) if at else None,
        "aurc": curve["aurc"],
        "curve": [
            {"coverage": float(curve["coverage"][i]), "accuracy": float(curve["accuracy"][i])}
            for i in np.minimum(at_grid, len(curve["coverage"]) - 1)
        ],
        "figure": "risk_coverage.png",
    }


def _comparison_section(other, images, labels, correct, probs, classes, s, fig: FigureInputs) -> dict:
    other_probs = softmax(predict(other, images, "compare", s.progress), dtype=np.float64)
    other_pred = other_probs.argmax(1)
    other_correct = other_pred == labels
    summary = metrics.classification_summary(
        labels, other_pred, len(classes), s.bootstrap_resamples, s.seed, s.ci_level
    )
    pred = probs.argmax(1)
    differ = np.nonzero(pred != other_pred)[0][: s.gallery_size]
    if len(differ):
        fig.galleries["disagreements"] = Gallery(
            list(images[differ]),
            [
                f"t={short(classes[labels[i]])}\nA={short(classes[pred[i]])}\nB={short(classes[other_pred[i]])}"
                for i in differ
            ],
        )
    return {
        "model_path": str(other.info.path),
        "architecture": other.info.metadata.get("architecture", "unknown"),
        "accuracy": summary["accuracy"],
        "accuracy_ci": summary["accuracy_ci"],
        "macro_f1": summary["macro_f1"],
        "ece": calibration.expected_calibration_error(other_probs, labels, s.ece_bins),
        "disagreements": int((pred != other_pred).sum()),
        "mcnemar": stats.mcnemar(correct, other_correct),
        "figure": "disagreements.png" if len(differ) else None,
    }


def _wardrobe_section(model, old, items: WardrobeItems, which: str, classes, s, fig: FigureInputs) -> dict:
    """The person's held-out items: this model (and the one it would replace) per class, the items
    whose answer changed, and McNemar's test between the two on them."""
    new_pred = predict(model, items.images, "wardrobe", False).argmax(1)
    new_correct = new_pred == items.labels
    n = len(items.labels)
    section = {
        "items": n,
        "which": which,
        "accuracy": float(new_correct.mean()),
        "accuracy_ci": list(stats.wilson_interval(int(new_correct.sum()), n)),
        "old_accuracy": None,
        "old_accuracy_ci": None,
        "gain": None,
        "mcnemar": None,
        "changed": [],
        "changed_count": 0,
        "figure": None,
    }
    old_pred = predict(old, items.images, "wardrobe", False).argmax(1) if old is not None else None
    per_class = []
    for c in np.unique(items.labels):
        here = items.labels == c
        row = {"class": classes[c], "n": int(here.sum()), "accuracy": float(new_correct[here].mean()), "old": None}
        if old_pred is not None:
            row["old"] = float((old_pred[here] == c).mean())
        per_class.append(row)
    section["per_class"] = per_class
    if old_pred is not None:
        old_correct = old_pred == items.labels
        section["old_accuracy"] = float(old_correct.mean())
        section["old_accuracy_ci"] = list(stats.wilson_interval(int(old_correct.sum()), n))
        section["gain"] = section["accuracy"] - section["old_accuracy"]
        section["mcnemar"] = stats.mcnemar(new_correct, old_correct)
        changed = np.nonzero(new_pred != old_pred)[0]
        section["changed_count"] = len(changed)
        section["changed"] = [
            {"id": items.ids[i], "label": classes[items.labels[i]], "old": classes[old_pred[i]],
             "new": classes[new_pred[i]], "now_right": bool(new_correct[i])}
            for i in changed
        ]  # fmt: skip
        shown = changed[: s.gallery_size]
        if len(shown):
            fig.galleries["wardrobe_changes"] = Gallery(
                list(items.images[shown]),
                [f"t={short(classes[items.labels[i]])}\nold={short(classes[old_pred[i]])}\n"
                 f"new={short(classes[new_pred[i]])}" for i in shown],
            )  # fmt: skip
            section["figure"] = "wardrobe_changes.png"
    return section
