"""`wardrobe report` end to end on a small seeded sample: files, numbers against sklearn,
one source for every number, gates, atomic writes, clear errors, and a real browser."""

from __future__ import annotations

import argparse
import copy
import html.parser
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import tiny_checkpoint
from onnx import TensorProto, helper, numpy_helper
from sklearn.metrics import classification_report, confusion_matrix

from contract.runtime import ModelError, load_model
from contract.split import stratified_split
from report import cli
from report.compute import ReportSettings
from report.render import render
from report.robustness import seeded_subset
from training import fashion_mnist
from training.checkpoint import load_checkpoint, save_checkpoint
from training.export import export
from wardrobe.cli import main as wardrobe

SMALL = dict(
    limit=400,
    val_limit=800,
    robustness_images=60,
    photo_images=12,
    style_images=4,
    bootstrap_resamples=100,
    progress=False,
)


def centroid_model(path: Path, images: np.ndarray, labels: np.ndarray, scale: float, config: str | None = None) -> Path:
    """A contract-compliant ONNX nearest-centroid classifier (about 65% accurate, no training):
    logits = scale * (x . m_c - |m_c|^2 / 2). `config` replaces its recorded training config."""
    x = images.reshape(len(images), -1) / 255.0
    means = np.stack([x[labels == c].mean(0) for c in range(10)])
    weights = (means.T * scale).astype(np.float32)
    bias = (-0.5 * scale * (means**2).sum(1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        ],
        "centroids",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    recorded = {"data": {"split_seed": 0, "val_size": 5000}, "optim": {"name": "none"}}
    helper.set_model_props(
        model,
        {
            "classes": json.dumps(list(fashion_mnist.CLASSES)),
            "architecture": "centroid",
            "parameters": str(weights.size + bias.size),
            "config": json.dumps(recorded) if config is None else config,
            "input_mean": "0.286",
            "dataset_sha256": "0" * 64,
            "input_std": "0.353",
        },
    )
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory, fmnist, tiny_model_path) -> dict[str, Path]:
    """The report's model is a small CNN from our real exporter (real metadata); the
    comparison and baseline model is a nearest-centroid classifier built here."""
    root = tmp_path_factory.mktemp("models")
    ds = fmnist
    return {
        "main": tiny_model_path,
        "other": centroid_model(root / "other.onnx", ds.train_images[6000:7000], ds.train_labels[6000:7000], 0.8),
    }


def make_args(model: Path, out: Path, **kw) -> argparse.Namespace:
    values = dict(model=model, compare=None, run=None, out=out, fail_under=[], data_dir=None)
    values.update(kw)
    return argparse.Namespace(**values)


@pytest.fixture(scope="module")
def built(tmp_path_factory, models) -> dict:
    """One full small report with every optional part: --compare, --run, ablation, baseline."""
    root = tmp_path_factory.mktemp("report")
    run = root / "runs" / "demo"
    run.mkdir(parents=True)
    config = {"data": {"split_seed": 0}, "augment": {"translate": 2, "hflip": True}}
    (run / "config.json").write_text(json.dumps({"config": config}))
    rows = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_acc": 0.8 + e / 100,
            "val_loss": 1.1 / e,
            "val_acc": 0.79 + e / 100,
            "lr": 0.1,
            "seconds": 2.0,
        }
        for e in range(1, 6)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ablation = root / "ablation.json"
    ablation.write_text(
        json.dumps(
            [
                {
                    "variant": "baseline",
                    "seeds": [0, 1],
                    "val_acc_mean": 0.91,
                    "val_acc_std": 0.002,
                    "val_accs": [0.909, 0.911],
                }
            ]
        )
    )
    out = root / "reports" / "main"
    args = make_args(
        models["main"],
        out,
        compare=models["other"],
        run=run,
        fail_under=["accuracy=0.3", "ece=0.5"],
    )
    settings = ReportSettings(**SMALL, baseline_model=models["other"], ablation=ablation)
    code = cli.run_report(args, settings)
    return {
        "code": code,
        "out": out,
        "json": json.loads((out / "report.json").read_text()),
        "html": (out / "report.html").read_text(),
        "settings": settings,
    }


def test_report_writes_html_json_and_every_figure_it_names(built):
    out, report = built["out"], built["json"]
    assert built["code"] == 0
    names = set()

    def collect(value):
        if isinstance(value, dict):
            for k, v in value.items():
                if (k == "figure" or k.endswith("_figure") or k == "samples") and v:
                    names.add(v)
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    collect(report)
    assert {
        "confusion.png",
        "reliability.png",
        "robustness.png",
        "learning_curves.png",
        "disagreements.png",
        "label_issues.png",
        "risk_coverage.png",
    } <= names
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert report["ablation"]["rows"][0]["variant"] == "baseline"
    assert report["model"]["run"]["epochs"] == 5
    assert not list(out.parent.glob(".main.*")), "temporary directories left behind"


def test_comparison_counts_the_images_only_one_model_gets_right(built, models, fmnist):
    idx = seeded_subset(len(fmnist.test_labels), SMALL["limit"], 0)
    x, labels = fmnist.test_images[idx, None].astype(np.float32) / 255, fmnist.test_labels[idx]
    right_a = load_model(models["main"]).logits(x).argmax(1) == labels
    right_b = load_model(models["other"]).logits(x).argmax(1) == labels
    mcnemar = built["json"]["comparison"]["mcnemar"]
    assert (mcnemar["a_only"], mcnemar["b_only"]) == (int((right_a & ~right_b).sum()), int((~right_a & right_b).sum()))
    assert mcnemar["a_only"] + mcnemar["b_only"] > 0  # the two models differ, so the test means something


def test_report_numbers_match_sklearn_on_the_same_predictions(built, models, fmnist):
    report = built["json"]
    idx = seeded_subset(len(fmnist.test_labels), SMALL["limit"], 0)
    labels = fmnist.test_labels[idx]
    model = load_model(models["main"])
    pred = model.logits(fmnist.test_images[idx, None].astype(np.float32) / 255).argmax(1)
    ref = classification_report(labels, pred, output_dict=True, zero_division=0)
    ev = report["evaluation"]
    assert ev["n"] == SMALL["limit"]
    assert ev["accuracy"] == pytest.approx(ref["accuracy"])
    assert ev["macro_f1"] == pytest.approx(ref["macro avg"]["f1-score"])
    for c, row in enumerate(ev["per_class"]):
        assert row["precision"] == pytest.approx(ref[str(c)]["precision"])
        assert row["recall"] == pytest.approx(ref[str(c)]["recall"])
        assert row["f1"] == pytest.approx(ref[str(c)]["f1-score"])
        assert row["precision_ci"][0] <= row["precision"] <= row["precision_ci"][1]
    assert report["confusion"]["matrix"] == confusion_matrix(labels, pred).tolist()
    assert ev["accuracy_ci"][0] <= ev["accuracy"] <= ev["accuracy_ci"][1]


class NumberSpans(html.parser.HTMLParser):
    """Collects <span class="num"> (key, fmt, text) and the page text outside them."""

    def __init__(self):
        super().__init__()
        self.spans, self.text, self.stack = [], [], []

    VOID = {"img", "meta", "br", "hr", "link", "input", "col", "wbr"}

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        a = dict(attrs)
        self.stack.append((tag, a))
        if tag == "span" and a.get("class") == "num":
            self.spans.append([a["data-key"], a["data-fmt"], ""])

    def handle_endtag(self, tag):
        if tag not in self.VOID:
            assert self.stack.pop()[0] == tag

    def handle_data(self, data):
        tags = [t for t, _ in self.stack]
        if "style" in tags or "title" in tags:
            return
        if any(t == "span" and a.get("class") == "num" for t, a in self.stack):
            self.spans[-1][2] += data
        else:
            self.text.append(data)


def written(value, fmt: str) -> str:
    """How the page should write a number: an independent copy of the page's formats."""
    if value is None:
        return "n/a"
    table = {
        "int": lambda v: f"{int(v):,}",
        "str": str,
        "sha": lambda v: str(v)[:16],
        "p": lambda v: "< 1e-300" if v == 0 else f"{v:.3g}",
    }
    if fmt in table:
        return table[fmt](value)
    if fmt.startswith("pct"):
        return f"{100 * value:.{int(fmt[3:])}f}%"
    return f"{value:.{int(fmt[1:])}f}"


def without_optional_parts(report: dict) -> dict:
    """The report as it reads for a model exported before calibration was recorded, without
    --compare, --run, ablation, baseline or a reachable accuracy target: the template's other branches."""
    report = copy.deepcopy(report)
    report["model"].update(temperature=None, unsure_threshold=None, run=None)
    report["comparison"] = report["ablation"] = report["ablation_cnn"] = None
    report["robustness"].update(mce=None, relative_mce=None)
    for row in report["robustness"]["rows"]:
        for key in ("ce", "relative_ce", "baseline_accuracy"):
            row.pop(key)
    report["selective"].update(threshold=None, test_coverage=None, test_accuracy=None, abstained=None)
    report["photo_like"] = {"available": False, "reason": "no images requested", "accuracy": None}
    report["photo_styles"] = {"available": False, "reason": "no images requested"}
    report["gates"]["photo_accuracy"] = None
    report["provenance"].update(compare_sha256=None, baseline_sha256=None)
    return report


@pytest.mark.parametrize("variant", ["as built", "without optional parts"])
def test_every_number_in_the_html_comes_from_report_json(built, variant):
    report = built["json"] if variant == "as built" else without_optional_parts(built["json"])
    page = NumberSpans()
    page.feed(built["html"] if variant == "as built" else render(report, built["out"]))
    assert len(page.spans) > 200
    for key, fmt, text in page.spans:
        value = report
        for part in key.split("."):
            value = value[int(part)] if isinstance(value, list) else value[part]
        assert text == written(value, fmt), key
    prose = " ".join(page.text)
    for allowed in (
        "SHA-256",
        "F1",
        "MNIST-C",
        "ImageNet-C",
        "et al. 2017",
        "et al. 2021",
        "Dietterich 2019",
        "Gilmer 2019",
    ):
        prose = prose.replace(allowed, "")
    stray = [prose[max(m.start() - 30, 0) : m.end() + 30] for m in re.finditer(r"\d", prose)]
    assert not stray, f"numbers written outside report.json: {stray}"


def test_the_page_states_the_calibration_the_model_records(built, models):
    recorded = load_model(models["main"]).info.metadata
    model = built["json"]["model"]
    assert model["temperature"] == float(recorded["temperature"])
    assert model["unsure_threshold"] == float(recorded["unsure_threshold"])
    assert 'data-key="model.temperature"' in built["html"]
    assert "already divides its logits" in built["html"]
    assert "already divides its logits" not in render(without_optional_parts(built["json"]), built["out"])


def test_report_is_self_contained(built):
    page = built["html"]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "url(" not in page and "@import" not in page
    assert page.count('src="data:image/png;base64,') >= 10


def test_fail_under_exits_non_zero_when_a_threshold_is_missed(models, tmp_path, capsys):
    args = make_args(models["main"], tmp_path / "r", fail_under=["accuracy=0.99", "ece=0.5"])
    tiny = ReportSettings(
        **{**SMALL, "limit": 100, "robustness_images": 20, "photo_images": 4},
        baseline_model=None,
        ablation=None,
        ablation_cnn=None,
    )
    assert cli.run_report(args, tiny) == cli.GATE_FAILED
    assert "gate failed: accuracy = " in capsys.readouterr().err
    assert (tmp_path / "r" / "report.json").is_file()  # the report is still written for CI


def test_gates_compare_in_the_right_direction():
    values = {"accuracy": 0.9, "ece": 0.04, "mce": None}
    assert cli.check_gates(values, {"accuracy": 0.9, "ece": 0.04}) == []
    missed = cli.check_gates(values, {"accuracy": 0.95, "ece": 0.03, "mce": 1.0})
    assert [m.split()[0] for m in missed] == ["accuracy", "ece", "mce:"]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("accuracy", "expected KEY=VALUE"),
        ("speed=3", "expected KEY=VALUE"),
        ("ece=low", "'low' is not a number"),
        ("ece=nan", "must be finite"),
    ],
)
def test_bad_fail_under_is_refused_before_any_work(item, message, tmp_path):
    args = make_args(tmp_path / "missing.onnx", tmp_path / "r", fail_under=[item])
    with pytest.raises(ValueError, match=message):
        cli.run_report(args)


def test_missing_and_wrong_model_files_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ModelError, match="missing.onnx: model file not found"):
        cli.run_report(make_args(tmp_path / "missing.onnx", tmp_path / "r"))
    wrong = tmp_path / "notes.onnx"
    wrong.write_text("this is not a model")
    with pytest.raises(ModelError, match="notes.onnx: not an ONNX model"):
        cli.run_report(make_args(wrong, tmp_path / "r"))
    assert not (tmp_path / "r").exists()
    code = wardrobe(["report", "--model", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "r")])
    assert code == 1
    assert "wardrobe report: error:" in capsys.readouterr().err


def test_bad_output_directories_are_refused(models, tmp_path):
    with pytest.raises(ValueError, match="--out must name the report directory"):
        cli.run_report(make_args(models["main"], Path("")))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        cli.run_report(make_args(models["main"], a_file))
    with pytest.raises(ValueError, match="cannot create the output directory"):
        cli.run_report(make_args(models["main"], a_file / "sub" / "r"))
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="non-empty directory that holds no report"):
        cli.run_report(make_args(models["main"], precious))


def test_a_crash_leaves_no_half_report_and_keeps_the_previous_one(models, tmp_path, monkeypatch):
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.json").write_text('{"old": true}')

    def crash(ctx, tmp, *args):
        (tmp / "confusion.png").write_bytes(b"half")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "build_report", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.run_report(make_args(models["main"], out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]


def test_a_bad_run_directory_is_a_clear_error(models, tmp_path):
    with pytest.raises(ValueError, match="no metrics.jsonl"):
        cli.run_report(make_args(models["main"], tmp_path / "r", run=tmp_path), ReportSettings(**SMALL))


def test_a_run_whose_config_is_not_json_is_a_clear_error(models, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    row = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5}
    (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    (run / "config.json").write_text('{"config": {"data": ')
    with pytest.raises(ValueError, match=r"run/config\.json: not JSON"):
        cli.run_report(make_args(models["main"], tmp_path / "r", run=run), ReportSettings(**SMALL))


@pytest.fixture(scope="module")
def other_split_model(tmp_path_factory) -> Path:
    """A small CNN exported by our real exporter from a config with another validation split
    (val_size 3000, split seed 7) than the default (5000, 0)."""
    root = tmp_path_factory.mktemp("split-model")
    checkpoint = tiny_checkpoint(root / "tiny.pt", steps=10)
    state = load_checkpoint(checkpoint)
    state["config"]["data"].update(val_size=3000, split_seed=7)
    save_checkpoint(state, checkpoint)
    return export(checkpoint, root / "split.onnx").path


def test_the_report_validates_on_the_split_the_model_records(other_split_model, fmnist, tmp_path):
    settings = ReportSettings(
        **{**SMALL, "limit": 100, "val_limit": None, "robustness_images": 10, "photo_images": 0},
        baseline_model=None,
        ablation=None,
        ablation_cnn=None,
    )
    report = cli.write_report(make_args(other_split_model, tmp_path / "r"), settings)
    split = stratified_split(fmnist.train_labels, val_size=3000, seed=7)
    assert (report["settings"]["val_size"], report["settings"]["split_seed"]) == (3000, 7)
    assert report["data"]["validation_split"] == report["calibration"]["val_images"] == 3000
    assert report["data"]["split_checksum"] == split.checksum


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('{"data": {"split_seed": 0, ', "metadata 'config' is not valid JSON"),
        ("[1, 2]", "metadata 'config' must be a JSON object"),
        ('{"optim": {"name": "none"}}', "metadata records no validation split: no 'val_size' entry"),
        ('{"data": {"split_seed": 0}}', "the training config has no data.val_size and data.split_seed"),
        ('{"data": {"split_seed": 0, "val_size": "many"}}', "config data.val_size must be a whole number"),
    ],
)
def test_a_model_with_a_bad_or_missing_recorded_split_is_a_clear_error(config, message, fmnist, tmp_path):
    odd = centroid_model(tmp_path / "odd.onnx", fmnist.train_images[:1000], fmnist.train_labels[:1000], 0.8, config)
    settings = ReportSettings(**SMALL, baseline_model=None, ablation=None, ablation_cnn=None)
    with pytest.raises(ValueError, match=rf"odd\.onnx: {re.escape(message)}"):
        cli.run_report(make_args(odd, tmp_path / "r"), settings)
    assert not (tmp_path / "r").exists()


CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--hide-scrollbars",
]
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src);
  document.body.setAttribute("data-images", imgs.length);
  document.body.setAttribute("data-broken", JSON.stringify(broken));
});
</script>"""


@pytest.mark.slow
def test_report_opens_offline_in_chromium_with_every_image_decoded(built, tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not on PATH: `make tools` (part of `make test`) installs Debian's chromium")
    # A copy of the page with a probe script and one remote image: the remote one must fail
    # (the network is blocked, and the probe sees broken images), the report's own must not.
    page = built["html"].replace(
        "</body>", '<img alt="remote-control" src="http://example.com/x.png">' + PROBE + "</body>"
    )
    probe = tmp_path / "probe.html"
    probe.write_text(page)
    common = [
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run([*common, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    broken = json.loads(html.unescape(re.search(r'data-broken="([^"]*)"', dom).group(1)))
    assert images >= 11
    assert broken == ["remote-control"]
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            *common,
            "--window-size=1100,3000",
            f"--screenshot={shot}",
            (built["out"] / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [*common, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", (built["out"] / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_report_progress_in_a_log_is_plain_lines_and_it_ends_with_the_next_command(models, tmp_path, capsys):
    args = make_args(models["main"], tmp_path / "r")
    quiet = ReportSettings(**{**SMALL, "limit": 100, "robustness_images": 20, "photo_images": 4, "progress": True},
                           baseline_model=None, ablation=None, ablation_cnn=None)  # fmt: skip
    assert cli.run_report(args, quiet) == 0
    captured = capsys.readouterr()
    err = captured.err  # not a terminal
    assert captured.out.splitlines()[-2:] == ["next:", f"    wardrobe serve --model {models['main']}"]
    assert "report: started 0/13" in err and "report: done in " in err and "corruptions: done in " in err
    assert "\r" not in err and "\x1b" not in err


def test_progress_bars_are_tqdm_on_a_terminal_and_plain_lines_elsewhere():
    import io

    from tqdm import tqdm

    from training.progress import PlainProgress, bar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(bar(range(3), desc="x", stream=Terminal()), tqdm)
    log = io.StringIO()
    assert list(bar(range(3), desc="counting", stream=log)) == [0, 1, 2]
    assert isinstance(bar(desc="y", total=1, stream=io.StringIO()), PlainProgress)
    lines = log.getvalue().splitlines()
    assert (
        lines[0] == "counting: started 0/3"
        and lines[-1].startswith("counting: done in ")
        and lines[-1].endswith(", 3/3")
    )
