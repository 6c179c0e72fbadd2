"""The report dict -> one self-contained HTML file (figures inlined as base64 PNG, no external
requests, print CSS).

Every number in the page is written by `Page.num`, which looks the value up in the report
dict by its JSON path and marks it `<span class="num" data-key=PATH data-fmt=FMT>`; the
prose itself holds no numbers. A test checks both halves of that promise.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2rem; }
h3 { margin-bottom: .3rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.kv td { text-align: left; word-break: break-all; }
th { background: #f3f3f3; }
figure { margin: .8rem 0; break-inside: avoid; } figure img { max-width: 100%; }
figcaption { font-size: .85rem; color: #555; }
.headline { font-size: 1.15rem; background: #f6f8fa; padding: .6rem 1rem;
             border-left: 4px solid #0366d6; }
.muted { color: #666; font-size: .85rem; } code { font-size: .85rem; word-break: break-all; }
@media print { body { margin: 0; max-width: none; font-size: 11pt; } h2 { break-after: avoid; }
               table, figure { break-inside: avoid; } }
"""

SOURCES = {
    "Guo": "Guo et al. 2017, On Calibration of Modern Neural Networks",
    "Northcutt": "Northcutt et al. 2021, Confident Learning",
    "Hendrycks": "Hendrycks & Dietterich 2019, Benchmarking Neural Network Robustness",
    "Mu": "Mu & Gilmer 2019, MNIST-C",
    "Xiao": "Xiao et al. 2017, Fashion-MNIST",
}


def format_value(value, fmt: str) -> str:
    """How a number of the report is written in the page."""
    if value is None:
        return "n/a"
    if fmt == "str":
        return str(value)
    if fmt == "int":
        return f"{int(value):,}"
    if fmt.startswith("pct"):
        return f"{100 * float(value):.{int(fmt[3:])}f}%"
    if fmt.startswith("f"):
        return f"{float(value):.{int(fmt[1:])}f}"
    if fmt == "p":
        return "< 1e-300" if value == 0 else f"{float(value):.3g}"  # 0.0 means it underflowed
    if fmt == "sha":
        return str(value)[:16]
    raise ValueError(f"unknown number format {fmt!r}")


def lookup(data, key: str):
    """The value at a dotted JSON path ('evaluation.per_class.3.f1')."""
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


class Page:
    """Writes the page from the report dict; `num` is the only way a number gets in."""

    def __init__(self, report: dict, fig_dir: Path):
        self.r = report
        self.fig_dir = fig_dir
        self.parts: list[str] = []

    def num(self, key: str, fmt: str = "f3") -> str:
        text = format_value(lookup(self.r, key), fmt)
        return f'<span class="num" data-key="{key}" data-fmt="{fmt}">{html.escape(text)}</span>'

    def ci(self, key: str, fmt: str = "pct2") -> str:
        return f"[{self.num(key + '.0', fmt)}, {self.num(key + '.1', fmt)}]"

    def has(self, key: str) -> bool:
        try:
            return lookup(self.r, key) is not None
        except (KeyError, IndexError, TypeError):
            return False

    def add(self, *chunks: str) -> None:
        self.parts.extend(chunks)

    def figure(self, key: str, caption: str) -> None:
        if not self.has(key):
            return
        data = (self.fig_dir / lookup(self.r, key)).read_bytes()
        encoded = base64.b64encode(data).decode("ascii")
        self.add(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )

    def table(self, header: list[str], rows: list[list[str]], cls: str = "") -> None:
        head = "".join(f"<th>{h}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
        self.add(f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def render(report: dict, fig_dir: Path) -> str:
    """The whole page as one string."""
    p = Page(report, fig_dir)
    name = html.escape(Path(report["provenance"]["model_path"]).name)
    p.add(
        f"<h1>{html.escape(report['title'])}</h1>",
        f'<p class="muted">Generated {p.num("provenance.generated_at", "str")} from model '
        f"<code>{name}</code> (SHA-256 {p.num('provenance.model_sha256', 'sha')}…) "
        f"by <code>{p.num('provenance.command', 'str')}</code>.</p>",
    )
    for section in (
        _problem,
        _data,
        _model,
        _evaluation,
        _confusion,
        _failures,
        _calibration,
        _label_issues,
        _robustness,
        _selective,
        _comparison,
        _ablation,
        _deployment,
        _provenance,
    ):
        section(p)
    body = "\n".join(p.parts)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(report['title'])}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def _problem(p: Page) -> None:
    p.add(
        "<h2>The problem: a wardrobe that sorts itself</h2>",
        "<p>A camera looks at each garment put into the wardrobe and the wardrobe decides which "
        "shelf it goes on: one of ten kinds of clothing. A wrong shelf costs a person a search; "
        "a doubtful item the wardrobe sets aside costs a glance. This report follows the "
        "data-science cycle — problem, data, preparation, model, evaluation, deployment — and "
        "every number in it was measured on this model when the report was generated.</p>",
        f'<p class="headline">Test accuracy {p.num("evaluation.accuracy", "pct2")} '
        f"(bootstrap interval {p.ci('evaluation.accuracy_ci')}) on "
        f"{p.num('evaluation.n', 'int')} test images, against "
        f"{p.num('evaluation.baseline.accuracy', 'pct2')} for always answering the most "
        f"frequent class. Macro-F1 {p.num('evaluation.macro_f1', 'f4')}. "
        f"Expected calibration error {p.num('calibration.ece', 'f4')}.</p>",
    )


def _data(p: Page) -> None:
    classes = p.r["classes"]
    p.add(
        "<h2>The data</h2>",
        f"<p>Fashion-MNIST ({SOURCES['Xiao']}): Zalando product thumbnails reduced to "
        f"{p.num('settings.image_size', 'int')}×{p.num('settings.image_size', 'int')} "
        f"greyscale crops, white garment on black. {p.num('data.train_images', 'int')} "
        f"training and {p.num('data.test_images', 'int')} test images, ten classes. The "
        f"classes are balanced: each class holds between {p.num('data.min_class_share', 'pct1')} "
        f"and {p.num('data.max_class_share', 'pct1')} of every split. Dataset checksum "
        f"{p.num('provenance.dataset_checksum', 'sha')}… (SHA-256 over the four files' "
        f"digests).</p>",
    )
    p.figure("data.figures.samples", "Test images, one row per class.")
    rows = [
        [html.escape(c)] + [p.num(f"data.class_counts.{split}.{i}", "int") for split in ("train", "validation", "test")]
        for i, c in enumerate(classes)
    ]
    p.table(["class", "train", "validation", "test"], rows)
    p.add(
        "<h2>Preparation</h2>",
        f"<p>The training set is split, stratified by class, into "
        f"{p.num('data.train_split', 'int')} images to train on and "
        f"{p.num('data.validation_split', 'int')} to validate on (split seed "
        f"{p.num('settings.split_seed', 'int')}, index checksum "
        f"{p.num('data.split_checksum', 'sha')}…); the test set is used only here. Pixels "
        "are scaled to the unit interval",
    )
    if p.has("model.input_mean"):
        p.add(
            f" and normalised inside the model graph with mean {p.num('model.input_mean', 'f4')} "
            f"and standard deviation {p.num('model.input_std', 'f4')} (training pixels: mean "
            f"{p.num('data.pixel_mean', 'f4')}, deviation {p.num('data.pixel_std', 'f4')}), so "
            "callers never normalise."
        )
    augment = p.r["model"].get("augment") or {}
    if {"translate", "hflip"} <= augment.keys():
        flip = "with" if augment["hflip"] else "without"
        p.add(
            f" Training batches are augmented on the fly: random shifts of up to "
            f"{p.num('model.augment.translate', 'int')} pixels, {flip} left–right mirroring"
        )
        if augment.get("erase_prob"):
            p.add(f", random erasing with probability {p.num('model.augment.erase_prob', 'f2')}")
        p.add(".</p>")
    else:
        p.add(" Augmentation, if any, is in the training recipe below.</p>")


def _model(p: Page) -> None:
    p.add(
        "<h2>The model</h2>",
        f"<p>Architecture <b>{p.num('model.architecture', 'str')}</b> with "
        f"{p.num('model.parameters', 'int')} parameters; the exporter recorded validation "
        f"accuracy {p.num('model.val_accuracy', 'pct2')} and test accuracy "
        f"{p.num('model.test_accuracy', 'pct2')}.</p>",
    )
    config = p.r["model"]["config"]
    if config:
        p.add("<h3>Training recipe</h3>")
        p.table(
            ["setting", "value"],
            [[p.num(f"model.config.{i}.0", "str"), p.num(f"model.config.{i}.1", "str")] for i in range(len(config))],
        )
    if p.has("model.run"):
        p.add(
            "<h3>Learning curves</h3>",
            f"<p>{p.num('model.run.epochs', 'int')} epochs in "
            f"{p.num('model.run.seconds', 'f1')} s; best validation accuracy "
            f"{p.num('model.run.best_val_acc', 'pct2')} at epoch "
            f"{p.num('model.run.best_epoch', 'int')}; final training accuracy "
            f"{p.num('model.run.final_train_acc', 'pct2')}, validation "
            f"{p.num('model.run.final_val_acc', 'pct2')}.</p>",
        )
        p.figure("model.run.figure", "Loss and accuracy per epoch (training run log).")
    else:
        p.add(
            '<p class="muted">No training run directory was given (<code>--run</code>), so '
            "learning curves are not shown.</p>"
        )


def _evaluation(p: Page) -> None:
    ev = "evaluation"
    p.add(
        "<h2>Evaluation</h2>",
        f"<p>Accuracy {p.num(ev + '.accuracy', 'pct2')} ({p.num(ev + '.correct', 'int')} of "
        f"{p.num(ev + '.n', 'int')}); {p.num('settings.ci_level', 'pct0')} bootstrap percentile "
        f"interval {p.ci(ev + '.accuracy_ci')} from {p.num('settings.bootstrap_resamples', 'int')} "
        f"resamples, Wilson score interval {p.ci(ev + '.accuracy_wilson')}. Macro-F1 "
        f"{p.num(ev + '.macro_f1', 'f4')} {p.ci(ev + '.macro_f1_ci', 'f4')}. For scale, always "
        f"answering <i>{p.num(ev + '.baseline.class', 'str')}</i> (the most frequent training "
        f"class) scores {p.num(ev + '.baseline.accuracy', 'pct2')}.</p>",
    )
    rows = []
    for i, c in enumerate(p.r["classes"]):
        k = f"{ev}.per_class.{i}"
        rows.append(
            [html.escape(c)]
            + [f"{p.num(f'{k}.{m}', 'f3')} {p.ci(f'{k}.{m}_ci', 'f3')}" for m in ("precision", "recall", "f1")]
            + [p.num(f"{k}.support", "int")]
        )
    p.table(["class", "precision", "recall", "F1", "support"], rows)


def _confusion(p: Page) -> None:
    p.add("<h2>Confusions</h2>")
    p.figure("confusion.figure", "Confusion matrix: counts (left) and row-normalised (right).")
    pairs = p.r["confusion"]["top_pairs"]
    if pairs:
        p.table(
            ["true class", "predicted as", "count", "share of the true class"],
            [
                [
                    p.num(f"confusion.top_pairs.{i}.true_class", "str"),
                    p.num(f"confusion.top_pairs.{i}.predicted_class", "str"),
                    p.num(f"confusion.top_pairs.{i}.count", "int"),
                    p.num(f"confusion.top_pairs.{i}.rate", "pct1"),
                ]
                for i in range(len(pairs))
            ],
        )
        p.figure(
            "confusion.pairs_figure",
            "The most confused pairs, one row each in the order "
            "of the table, most confident mistakes first (t = true, p = predicted, confidence).",
        )


def _failures(p: Page) -> None:
    p.add(
        "<h2>Failure cases</h2>",
        f"<p>Looking at the mistakes: {p.num('evaluation.errors', 'int')} test images are "
        f"misclassified, {p.num('failures.errors_above_90', 'int')} of them with confidence "
        f"of at least {p.num('failures.confident_threshold', 'pct0')}.</p>",
    )
    p.figure("failures.confident_errors.figure", "The most confident errors overall.")
    p.figure(
        "failures.per_class_errors.figure",
        "The most confident errors of each true class, in class order.",
    )
    p.figure("failures.unsure_correct.figure", "The least confident correct answers.")


def _calibration(p: Page) -> None:
    c = "calibration"
    p.add(
        "<h2>Calibration</h2>",
        "<p>Does a confidence of ninety percent mean right nine times in ten? Expected "
        f"calibration error over {p.num('settings.ece_bins', 'int')} equal-width confidence bins: "
        f"{p.num(c + '.ece', 'f4')} as shipped; negative log-likelihood "
        f"{p.num(c + '.nll', 'f4')}. Temperature scaling ({SOURCES['Guo']}) fitted on "
        f"{p.num(c + '.val_images', 'int')} validation images gives T = "
        f"{p.num(c + '.temperature', 'f3')}, and then ECE {p.num(c + '.ece_scaled', 'f4')}, "
        f"NLL {p.num(c + '.nll_scaled', 'f4')} on the test set. Scaling keeps every "
        "prediction and changes only the confidences.</p>",
    )
    p.figure(c + ".figure", "Reliability diagrams before and after temperature scaling.")


def _label_issues(p: Page) -> None:
    li = "label_issues"
    p.add(
        "<h2>Likely label errors</h2>",
        f"<p>Confident learning ({SOURCES['Northcutt']}; cleanlab's implementation) flags "
        f"{p.num(li + '.count', 'int')} test images ({p.num(li + '.share', 'pct2')}) whose given "
        "label disagrees with what the model confidently sees; some are model errors, some "
        "are mislabelled or ambiguous images. As a check that it finds real errors, "
        f"{p.num(li + '.planted.planted', 'int')} test labels "
        f"({p.num(li + '.planted.fraction', 'pct1')}) were flipped at random: it recovered "
        f"{p.num(li + '.planted.recovered', 'int')} of them (recall "
        f"{p.num(li + '.planted.recall', 'pct1')}; precision of its flags "
        f"{p.num(li + '.planted.precision', 'pct1')}).</p>",
    )
    p.figure(
        li + ".figure",
        "Top candidates, most likely first (given label, model's answer and confidence).",
    )


def _robustness(p: Page) -> None:
    rb = "robustness"
    p.add(
        "<h2>Robustness</h2>",
        f"<p>Accuracy on {p.num(rb + '.images', 'int')} seeded test images under "
        f"{p.num('settings.corruption_kinds', 'int')} corruptions in the style of MNIST-C "
        f"({SOURCES['Mu']}), {p.num('settings.severities', 'int')} severities each (severity "
        "zero is the clean image). Mean corrupted accuracy "
        f"{p.num(rb + '.mean_corrupted_accuracy', 'pct1')}, clean "
        f"{p.num(rb + '.clean_accuracy', 'pct1')}.",
    )
    if p.has(rb + ".mce"):
        p.add(
            f" Corruption error relative to the pinned baseline "
            f"<code>{p.num(rb + '.baseline_model', 'str')}</code> as in ImageNet-C "
            f"({SOURCES['Hendrycks']}): mCE {p.num(rb + '.mce', 'pct1')}, relative mCE "
            f"{p.num(rb + '.relative_mce', 'pct1')} (below one hundred percent: more robust "
            "than the baseline).</p>"
        )
    else:
        p.add(" The baseline model was not found, so no corruption error is given.</p>")
    p.figure(rb + ".figure", "Accuracy against severity for each corruption.")
    sev = p.r[rb]["severities"]
    header = ["corruption"] + [p.num(f"{rb}.severities.{j}", "int") for j in range(len(sev))]
    header += ["CE", "relative CE"] if p.has(rb + ".mce") else []
    rows = []
    for i, row in enumerate(p.r[rb]["rows"]):
        k = f"{rb}.rows.{i}"
        cells = [p.num(k + ".label", "str")]
        cells += [p.num(f"{k}.accuracy.{j}", "pct1") for j in range(len(row["accuracy"]))]
        if "ce" in row:
            cells += [p.num(k + ".ce", "pct1"), p.num(k + ".relative_ce", "pct1")]
        rows.append(cells)
    p.table(header, rows)
    p.add("<h3>Photo-like uploads</h3>")
    if p.r["photo_like"]["available"]:
        p.add(
            f"<p>{p.num('photo_like.images', 'int')} test images were turned into photo-like "
            "uploads (enlarged, coloured, dark garment on an uneven light background, "
            "off-centre, saved in several formats) and read back through the service's own "
            f"preprocessing: accuracy {p.num('photo_like.accuracy', 'pct1')} against "
            f"{p.num('photo_like.crop_accuracy', 'pct1')} on the same images as crops.</p>"
        )
        p.figure("photo_like.figure", "Photo-like uploads after the service's preprocessing.")
    else:
        p.add(f'<p class="muted">{p.num("photo_like.reason", "str")}</p>')


def _selective(p: Page) -> None:
    se = "selective"
    p.add("<h2>Selective prediction: when to say “not sure”</h2>")
    if p.has(se + ".threshold"):
        p.add(
            f"<p>If the wardrobe answers only when its confidence is at least "
            f"{p.num(se + '.threshold', 'f4')} (the lowest threshold that reached "
            f"{p.num(se + '.target', 'pct0')} accuracy on the validation split) it answers "
            f"{p.num(se + '.test_coverage', 'pct1')} of test items with accuracy "
            f"{p.num(se + '.test_accuracy', 'pct2')} and sets aside "
            f"{p.num(se + '.abstained', 'int')} for a person to sort. Area under the "
            f"risk–coverage curve {p.num(se + '.aurc', 'f4')}.</p>"
        )
    else:
        p.add(
            f"<p>No confidence threshold reached {p.num(se + '.target', 'pct0')} accuracy on "
            f"the validation split. Area under the risk–coverage curve "
            f"{p.num(se + '.aurc', 'f4')}.</p>"
        )
    p.figure(se + ".figure", "Accuracy of the answered items against the share answered.")


def _comparison(p: Page) -> None:
    if not p.has("comparison"):
        return
    c = "comparison"
    p.add(
        "<h2>Comparison</h2>",
        f"<p>Model A is this report's model, model B is "
        f"<code>{p.num(c + '.model_path', 'str')}</code>, on the same test images.</p>",
    )
    p.table(
        ["", "A", "B"],
        [
            ["architecture", p.num("model.architecture", "str"), p.num(c + ".architecture", "str")],
            [
                "accuracy",
                f"{p.num('evaluation.accuracy', 'pct2')} {p.ci('evaluation.accuracy_ci')}",
                f"{p.num(c + '.accuracy', 'pct2')} {p.ci(c + '.accuracy_ci')}",
            ],
            ["macro-F1", p.num("evaluation.macro_f1", "f4"), p.num(c + ".macro_f1", "f4")],
            ["ECE", p.num("calibration.ece", "f4"), p.num(c + ".ece", "f4")],
            [
                "right where the other is wrong",
                p.num(c + ".mcnemar.a_only", "int"),
                p.num(c + ".mcnemar.b_only", "int"),
            ],
        ],
    )
    p.add(
        f"<p>They disagree on {p.num(c + '.disagreements', 'int')} images. McNemar's test on "
        f"the images exactly one of them gets right: exact binomial p = "
        f"{p.num(c + '.mcnemar.p_exact', 'p')} (chi-square with continuity correction "
        f"{p.num(c + '.mcnemar.chi2', 'f2')}, p = {p.num(c + '.mcnemar.p_chi2', 'p')}).</p>"
    )
    p.figure(c + ".figure", "Images where the two models disagree (t = true, A and B answers).")


def _ablation(p: Page) -> None:
    if not p.has("ablation"):
        return
    p.add(
        "<h2>Ablation</h2>",
        f"<p>From the training study (<code>{p.num('ablation.path', 'str')}</code>): validation "
        "accuracy of each variant, mean and standard deviation over seeds.</p>",
    )
    p.table(
        ["variant", "validation accuracy", "std", "seeds"],
        [
            [
                p.num(f"ablation.rows.{i}.variant", "str"),
                p.num(f"ablation.rows.{i}.val_acc_mean", "pct2"),
                p.num(f"ablation.rows.{i}.val_acc_std", "pct2"),
                p.num(f"ablation.rows.{i}.seeds", "int"),
            ]
            for i in range(len(p.r["ablation"]["rows"]))
        ],
    )


def _confidence_word(p: Page) -> str:
    t = p.r["calibration"]["temperature"]
    return "over-confident" if t > 1.05 else "under-confident" if t < 0.95 else "about right in its confidence"


def _deployment(p: Page) -> None:
    notes = [
        "The model ships as one ONNX file with its normalisation and class names inside; the "
        "service opens it through the same runtime module this report used."
    ]
    if p.has("selective.threshold"):
        notes.append(
            f"Set the service's abstention threshold near {p.num('selective.threshold', 'f4')} "
            "to set doubtful items aside instead of shelving them wrongly."
        )
    else:
        notes.append("No confidence threshold reaches the target accuracy: every answer needs review.")
    notes.append(
        f"The model is {_confidence_word(p)}: temperature T = {p.num('calibration.temperature', 'f3')} "
        "fits best; divide logits by T before showing probabilities to people."
    )
    if p.has("gates.photo_accuracy"):
        notes.append(
            "Photos go through the service's preprocessing; on photo-like uploads accuracy is "
            f"{p.num('gates.photo_accuracy', 'pct1')}. The corruptions above show which camera "
            "conditions to avoid."
        )
    notes.append(
        "Gate releases on this report: <code>wardrobe report --fail-under accuracy=… "
        "--fail-under ece=…</code> exits non-zero when a threshold is missed."
    )
    p.add("<h2>Deployment notes</h2><ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>")


def _provenance(p: Page) -> None:
    pv = "provenance"
    p.add("<h2>Provenance</h2>")
    rows = [
        ["model file", p.num(pv + ".model_path", "str")],
        ["model SHA-256", p.num(pv + ".model_sha256", "str")],
        ["dataset checksum", p.num(pv + ".dataset_checksum", "str")],
        ["dataset source", p.num(pv + ".dataset_source", "str")],
        ["command", p.num(pv + ".command", "str")],
        ["source commit", p.num(pv + ".source_commit", "str")],
        ["runtime providers", p.num(pv + ".providers", "str")],
        ["report time", p.num("timing.seconds", "f1")],
    ]
    if p.has(pv + ".compare_sha256"):
        rows.append(["comparison model SHA-256", p.num(pv + ".compare_sha256", "str")])
    if p.has(pv + ".baseline_sha256"):
        rows.append(["baseline model SHA-256", p.num(pv + ".baseline_sha256", "str")])
    p.table(["item", "value"], rows, cls="kv")
    p.add("<h3>Model metadata</h3>")
    p.table(
        ["key", "value"],
        cls="kv",
        rows=[
            [p.num(f"{pv}.metadata.{i}.0", "str"), p.num(f"{pv}.metadata.{i}.1", "str")]
            for i in range(len(p.r[pv]["metadata"]))
        ],
    )
