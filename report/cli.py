"""`wardrobe report`: check the arguments, load the models and the data once, then
compute (numbers, report.json) -> figures (PNG, drawn from report.json and the figure inputs)
-> template (report.html) in a temporary directory beside --out, swap it into place only when
complete, then apply the --fail-under gates."""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from contract.files import move_into_place, naming_the_file
from contract.runtime import load_model
from report import figures, story
from report.compute import Context, ReportSettings, Stages, compute
from report.render import render
from training import fashion_mnist

# Gate name -> True when higher is better. `--fail-under ece=0.03` fails when ECE is above 0.03.
GATES = {
    "accuracy": True,
    "macro_f1": True,
    "photo_accuracy": True,
    "coverage_at_target": True,
    "ece": False,
    "ece_scaled": False,
    "mce": False,
    "label_issues": False,
    "wardrobe_accuracy": True,
    "wardrobe_gain": True,
}
GATE_FAILED = 3  # exit status when the report was written but a threshold was missed


def parse_gates(items: list[str]) -> dict[str, float]:
    """['accuracy=0.94', 'ece=0.03'] -> {'accuracy': 0.94, 'ece': 0.03}, checked."""
    gates = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in GATES:
            raise ValueError(f"--fail-under {item!r}: expected KEY=VALUE with KEY one of {sorted(GATES)}")
        try:
            gates[key] = float(value)
        except ValueError:
            raise ValueError(f"--fail-under {item!r}: {value!r} is not a number") from None
        if not math.isfinite(gates[key]):
            raise ValueError(f"--fail-under {item!r}: the threshold must be finite")
    return gates


def check_gates(values: dict, gates: dict[str, float]) -> list[str]:
    """One message per missed threshold (an unmeasured value misses)."""
    missed = []
    for key, threshold in gates.items():
        value = values.get(key)
        if value is None:
            missed.append(f"{key}: not measured in this report (threshold {threshold:g})")
        elif GATES[key] and value < threshold:
            missed.append(f"{key} = {value:.4f} is below the threshold {threshold:g}")
        elif not GATES[key] and value > threshold:
            missed.append(f"{key} = {value:.4f} is above the threshold {threshold:g}")
    return missed


def check_out_dir(out: Path) -> Path:
    """The output directory, resolved; refuses the current directory, a file, a non-report
    directory with contents, and a parent we cannot write to."""
    if str(out).strip() in ("", "."):
        raise ValueError("--out must name the report directory, e.g. reports/cnn/ (got an empty path)")
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: --out exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.json").is_file():
        raise ValueError(f"{out}: --out is a non-empty directory that holds no report; refusing to replace it")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{parent}: cannot create the output directory ({exc.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{parent}: output directory is not writable")
    return out


def _jsonable(value):
    """numpy scalars to Python, NaN/inf to null (report.json stays strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def command_line(args: argparse.Namespace) -> str:
    parts = ["wardrobe", "report", "--model", str(args.model)]
    for flag, value in (
        ("--compare", args.compare),
        ("--run", args.run),
        ("--wardrobe", getattr(args, "wardrobe", None)),
        ("--out", args.out),
        ("--data-dir", getattr(args, "data_dir", None)),
    ):
        if value is not None:
            parts += [flag, str(value)]
    for gate in args.fail_under:
        parts += ["--fail-under", gate]
    return shlex.join(parts)


def load_context(args: argparse.Namespace, s: ReportSettings) -> Context:
    """Everything the report is about, loaded once: the models, the run log, the dataset."""
    baseline = None
    if s.baseline_model is not None and Path(s.baseline_model).is_file():
        baseline = load_model(s.baseline_model, threads=s.threads)
    model = load_model(Path(args.model), threads=s.threads)
    wardrobe = None
    if getattr(args, "wardrobe", None):
        from training.wardrobe_data import held_out_items

        wardrobe = held_out_items(str(args.wardrobe), model.info.metadata)
    return Context(
        model=model,
        wardrobe=wardrobe,
        compare=load_model(Path(args.compare), threads=s.threads) if args.compare else None,
        baseline=baseline,
        run=story.read_run(Path(args.run)) if args.run else None,
        data=fashion_mnist.load(getattr(args, "data_dir", None)),
        command=command_line(args),
    )


def build_report(ctx: Context, out_dir: Path, s: ReportSettings, stages: Stages) -> dict:
    """Compute the numbers, draw the figures into `out_dir` from them; return the report dict
    exactly as report.json will hold it."""
    report, inputs = compute(ctx, s, stages)
    report = _jsonable(report)
    figures.draw(report, inputs, out_dir)
    stages.done("figures")
    report["timing"] = stages.timing()
    return report


def write_report(args: argparse.Namespace, settings: ReportSettings | None = None) -> dict:
    """Build the report and move it into args.out atomically; return the report dict."""
    s = settings or ReportSettings()
    out = check_out_dir(Path(args.out))
    # naming_the_file: a full disk says which report it could not write, not just "errno 28".
    with Stages(s.progress) as stages, naming_the_file(out, "report"):
        ctx = load_context(args, s)
        stages.done("loading")
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        except OSError as exc:
            raise ValueError(f"{out.parent}: cannot write the report there ({exc.strerror})") from None
        try:
            report = build_report(ctx, tmp, s, stages)
            (tmp / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
            (tmp / "report.html").write_text(render(report, tmp), encoding="utf-8")
            tmp.chmod(0o755)  # mkdtemp makes it 0700; a report is for reading
            old = None
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                out.rename(old / out.name)
            move_into_place(tmp, out)  # every file flushed, then the name
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return report


def run_report(args: argparse.Namespace, settings: ReportSettings | None = None) -> int:
    """The sub-command: 0 when written and every gate passes, GATE_FAILED when a gate misses."""
    gates = parse_gates(args.fail_under)  # before the work, so a typo fails fast
    report = write_report(args, settings)
    g = report["gates"]
    print(
        f"wrote {Path(args.out) / 'report.html'}: accuracy {g['accuracy']:.4f}, "
        f"macro-F1 {g['macro_f1']:.4f}, ECE {g['ece']:.4f} "
        f"({report['timing']['seconds']:.1f} s)"
    )
    if report.get("wardrobe"):
        w = report["wardrobe"]
        change = f", {w['gain'] * 100:+.2f} points vs --compare" if w["gain"] is not None else ""
        print(f"your wardrobe: accuracy {w['accuracy']:.4f} on {w['items']} held-out items{change}")
    missed = check_gates(g, gates)
    for message in missed:
        print(f"wardrobe report: gate failed: {message}", file=sys.stderr)
    if missed:
        return GATE_FAILED
    if report.get("wardrobe"):
        print(f"next:\n    wardrobe models publish {args.model}\n    wardrobe models promote <the SHA-256 it prints>")
    else:
        print(f"next:\n    wardrobe serve --model {args.model}")
    return 0
