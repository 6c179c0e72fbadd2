"""The story's context: the dataset summary, the model's training recipe and run log, the
ablation table and where everything came from."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from contract.runtime import ModelInfo

REPO = Path(__file__).resolve().parents[1]


def repo_relative(path: Path) -> str:
    """A path as the reader of a shipped report can follow it: relative to the repo when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _unwrap(config, where: str) -> dict:
    """A training config as a dict, unwrapped when stored as {"config": {...}} beside other run facts."""
    if isinstance(config, dict) and isinstance(config.get("config"), dict):
        config = config["config"]
    if not isinstance(config, dict):
        raise ValueError(f"{where} must be a JSON object (the training config), got {type(config).__name__}")
    return config


def recorded_config(info: ModelInfo) -> dict:
    """The training config the exporter recorded in the model's metadata ('config', JSON);
    {} when the model records none. Bad JSON is an error naming the model file and the key."""
    text = info.metadata.get("config")
    if text is None:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{info.path}: metadata 'config' is not valid JSON ({exc.msg})") from None
    return _unwrap(config, f"{info.path}: metadata 'config'")


def training_config(info: ModelInfo, run: dict | None) -> dict:
    """The resolved training config: the run's config.json when given, else the model's metadata."""
    if run and run.get("config") is not None:
        return _unwrap(run["config"], f"{run['dir']}/config.json")
    return recorded_config(info)


def _whole_number(raw, where: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        return int(raw)
    raise ValueError(f"{where} must be a whole number, got {raw!r}")


def recorded_split(info: ModelInfo) -> tuple[int, int]:
    """(val_size, split_seed) of the validation split the model was trained with, as the model
    records it: the metadata keys 'val_size' and 'split_seed', else data.val_size and
    data.split_seed of the recorded training config. A model that records neither is an error
    (the report must not guess which images it never trained on)."""
    data = recorded_config(info).get("data")
    data = data if isinstance(data, dict) else {}
    values = []
    for key in ("val_size", "split_seed"):
        found = {}
        if key in info.metadata:
            found[f"metadata '{key}'"] = _whole_number(info.metadata[key], f"{info.path}: metadata '{key}'")
        if key in data:
            where = f"metadata 'config' data.{key}"
            found[where] = _whole_number(data[key], f"{info.path}: {where}")
        if not found:
            raise ValueError(
                f"{info.path}: the model records no validation split: neither metadata '{key}' nor "
                f"data.{key} in its metadata 'config' (wardrobe export writes them)"
            )
        if len(set(found.values())) > 1:
            raise ValueError(f"{info.path}: the model records two different {key}s: {found}")
        values.append(next(iter(found.values())))
    return values[0], values[1]


def flatten(config, prefix: str = "") -> list[list[str]]:
    """A nested config as [dotted key, value as text] rows."""
    if not isinstance(config, dict):
        return [[prefix, config if isinstance(config, str) else json.dumps(config)]]
    rows = []
    for key, value in config.items():
        rows += flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return rows


def source_commit() -> str:
    """HEAD of the checkout this code runs from, '+dirty' when it has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def read_run(run_dir: Path) -> dict:
    """A training run's resolved config and per-epoch metrics."""
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: run directory not found")
    metrics_file = run_dir / "metrics.jsonl"
    if not metrics_file.is_file():
        raise ValueError(f"{run_dir}: no metrics.jsonl in the run directory")
    rows = []
    for number, line in enumerate(metrics_file.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{metrics_file}:{number}: not JSON ({exc.msg})") from None
    needed = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc"}
    if not rows or not all(needed <= row.keys() for row in rows):
        raise ValueError(f"{metrics_file}: every line needs the keys {sorted(needed)}")
    config_file = run_dir / "config.json"
    config = None
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{config_file}: not JSON ({exc.msg})") from None
    return {"dir": str(run_dir), "config": config, "epochs": rows}


def data_section(ds, split, classes) -> dict:
    counts = {
        "train": np.bincount(ds.train_labels[split.train_indices], minlength=len(classes)).tolist(),
        "validation": np.bincount(ds.train_labels[split.val_indices], minlength=len(classes)).tolist(),
        "test": np.bincount(ds.test_labels, minlength=len(classes)).tolist(),
    }
    return {
        "train_images": len(ds.train_labels),
        "test_images": len(ds.test_labels),
        "train_split": len(split.train_indices),
        "validation_split": len(split.val_indices),
        "split_checksum": split.checksum,
        "class_counts": counts,
        "min_class_share": min(min(c) / sum(c) for c in counts.values()),
        "max_class_share": max(max(c) / sum(c) for c in counts.values()),
        "pixel_mean": float(ds.train_images.mean() / 255),
        "pixel_std": float(ds.train_images.std() / 255),
        "figures": {"samples": "samples.png"},
    }


def model_section(meta: dict, config: dict, run: dict | None) -> dict:
    def number(key):
        try:
            return float(meta[key])
        except (KeyError, ValueError):
            return None

    section = {
        "architecture": meta.get("architecture", "unknown"),
        "parameters": int(number("parameters")) if number("parameters") is not None else None,
        "val_accuracy": number("val_accuracy"),
        "test_accuracy": number("test_accuracy"),
        "input_mean": number("input_mean"),
        "input_std": number("input_std"),
        "config": flatten(config) if config else [],
        "augment": config.get("augment") if isinstance(config.get("augment"), dict) else None,
        "run": None,
    }
    if run:
        rows = run["epochs"]
        best = max(rows, key=lambda row: row["val_acc"])
        section["run"] = {
            "dir": run["dir"],
            "epochs": len(rows),
            "best_epoch": best["epoch"],
            "best_val_acc": best["val_acc"],
            "final_train_acc": rows[-1]["train_acc"],
            "final_val_acc": rows[-1]["val_acc"],
            "final_train_loss": rows[-1]["train_loss"],
            "final_val_loss": rows[-1]["val_loss"],
            "seconds": sum(row.get("seconds", 0) for row in rows),
            "history": rows,
            "figure": "learning_curves.png",
        }
    return section


def ablation_section(path: Path | None) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        rows = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg})") from None
    keys = ("variant", "val_acc_mean", "val_acc_std")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(keys) <= r.keys() for r in rows):
        raise ValueError(f"{path}: expected a list of rows with keys {list(keys)}")
    return {
        "path": repo_relative(path),
        "rows": [{**{k: r[k] for k in keys}, "seeds": len(r.get("seeds", []))} for r in rows],
    }
