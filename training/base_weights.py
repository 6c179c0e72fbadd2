"""The weights fine-tuning starts from: a small checkpoint shipped next to the default ONNX model.

`models/cnn.pt` holds `{"model": state_dict, "config": training config}` and loads with
`torch.load(..., weights_only=True)`. It is the `best.pt` of the run the shipped
`models/cnn.onnx` was exported from (`cp runs/<run>/best.pt models/cnn.pt`); for a
shipped model whose run is gone it is rebuilt from the ONNX file itself:

    python -m training.base_weights models/cnn.onnx --out models/cnn.pt

The exporter folded BatchNorm into the convolutions, so the rebuilt network is the
same architecture without BatchNorm layers (and computes the same logits).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from contract.files import sha256_file
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig, config_from_dict
from training.models import build_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "models" / "cnn.pt"
"""The shipped default model's weights ("default" in finetune.base)."""


def resolve(spec: str) -> Path:
    """finetune.base → a checkpoint path ("default" is the shipped one)."""
    return DEFAULT if spec == "default" else Path(spec)


def load_base(path: Path) -> tuple[nn.Module, TrainConfig, dict]:
    """The model (eval mode), its training config and the raw checkpoint."""
    state = load_checkpoint(path)
    try:
        cfg = config_from_dict(state["config"])
    except ValueError as exc:
        raise ValueError(f"{path}: the checkpoint's config is not a training config ({exc})") from None
    model = build_model(cfg.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{path}: weights do not match the checkpoint's architecture ({first})") from None
    return model.eval(), cfg, state


def from_onnx(onnx_path: Path) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the PyTorch model of an exported ONNX file (BatchNorm folded, so without BatchNorm)."""
    proto = onnx.load(str(onnx_path))
    metadata = {p.key: p.value for p in proto.metadata_props}
    if "config" not in metadata:
        raise ValueError(f"{onnx_path}: no training config in the model's metadata")
    config = json.loads(metadata["config"])
    config["model"]["batchnorm"] = False  # the exporter folded it into the preceding layers
    cfg = config_from_dict(config)
    model = build_model(cfg.model)
    # The exporter wraps the network as `model` (InferenceGraph) and keeps parameter names.
    weights = {t.name.removeprefix("model."): numpy_helper.to_array(t) for t in proto.graph.initializer}
    state = model.state_dict()
    missing = [k for k in state if k not in weights]
    if missing:
        raise ValueError(f"{onnx_path}: no initializer for {missing[:3]}; not exported by training/export.py?")
    model.load_state_dict({k: torch.from_numpy(np.array(weights[k])).reshape(state[k].shape) for k in state})
    return model.eval(), cfg


def write_from_onnx(onnx_path: Path, out: Path) -> Path:
    model, cfg = from_onnx(onnx_path)
    state = {
        "model": model.state_dict(),
        "config": dataclasses.asdict(cfg),
        "onnx_sha256": sha256_file(onnx_path),
        "rebuilt_from": Path(onnx_path).name,
    }
    save_checkpoint(state, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild fine-tuning start weights from an exported ONNX model")
    parser.add_argument("onnx", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        out = write_from_onnx(args.onnx, args.out)
    except (ValueError, OSError) as exc:
        print(f"training.base_weights: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
