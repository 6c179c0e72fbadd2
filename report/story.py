"""The story's context: the dataset summary, the model's training recipe and run log, the
ablation table and where everything came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from contract import metadata
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
    """The training config the exporter recorded in the model's metadata; {} when it records
    none. Bad JSON is an error naming the model file and the key."""
    try:
        return metadata.training_config(info.metadata) or {}
    except metadata.MetadataError as exc:
        raise ValueError(f"{info.path}: {exc}") from None


def training_config(info: ModelInfo, run: dict | None) -> dict:
    """The resolved training config: the run's config.json when given, else the model's metadata."""
    if run and run.get("config") is not None:
        return _unwrap(run["config"], f"{run['dir']}/config.json")
    return recorded_config(info)


def recorded_split(info: ModelInfo) -> tuple[int, int]:
    """(val_size, split_seed) of the validation split the model records (contract/metadata.py);
    a model that records none is an error naming the file (the report must not guess which
    images the model never trained on)."""
    try:
        split = metadata.validation_split(info.metadata)
    except metadata.MetadataError as exc:
        raise ValueError(f"{info.path}: {exc}") from None
    return split.val_size, split.seed


def flatten(config, prefix: str = "") -> list[list[str]]:
    """A nested config as [dotted key, value as text] rows."""
    if not isinstance(config, dict):
        return [[prefix, config if isinstance(config, str) else json.dumps(config)]]
    rows = []
    for key, value in config.items():
        rows += flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return rows


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


def model_section(info: ModelInfo, config: dict, run: dict | None) -> dict:
    def number(key: str) -> float | None:
        """A numeric metadata entry; None when the model does not record it, an error naming
        the file and the key when it is not a number."""
        if key not in info.metadata:
            return None
        try:
            return metadata.number(info.metadata, key)
        except metadata.MetadataError as exc:
            raise ValueError(f"{info.path}: {exc}") from None

    section = {
        "architecture": info.metadata.get(metadata.ARCHITECTURE, "unknown"),
        "parameters": int(number(metadata.PARAMETERS)) if number(metadata.PARAMETERS) is not None else None,
        "val_accuracy": number(metadata.VAL_ACCURACY),
        "test_accuracy": number(metadata.TEST_ACCURACY),
        "input_mean": number(metadata.INPUT_MEAN),
        "input_std": number(metadata.INPUT_STD),
        # calibration the exporter baked in (absent in models exported before it did)
        "temperature": number(metadata.TEMPERATURE),
        "unsure_threshold": number(metadata.UNSURE_THRESHOLD),
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
        saved = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg})") from None
    rows = saved.get("rows") if isinstance(saved, dict) else saved  # {"command", "commit", "rows"}, or a bare list
    keys = ("variant", "val_acc_mean", "val_acc_std")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(keys) <= r.keys() for r in rows):
        raise ValueError(f"{path}: expected a list of rows with keys {list(keys)}")
    return {
        "path": repo_relative(path),
        "rows": [{**{k: r[k] for k in keys}, "seeds": len(r.get("seeds", []))} for r in rows],
    }
