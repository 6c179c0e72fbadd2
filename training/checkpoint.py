"""Checkpoint files that load with `torch.load(..., weights_only=True)`, written atomically."""

from __future__ import annotations

from pathlib import Path

import torch

from contract.files import atomic_write


def save_checkpoint(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


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
