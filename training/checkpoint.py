"""Atomic checkpoint files that load with `torch.load(..., weights_only=True)`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)` then rename into place, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_checkpoint(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def write_json(data, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint with the safe unpickler; a clear error if it is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path}: not a wardrobe checkpoint (no model weights or config)")
    return state
