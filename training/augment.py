"""Batched, per-sample augmentation that runs on the training device.

torchvision's v2 transforms draw one set of random parameters per call, so a
batch gets the same crop/flip/erase for every image; calling them per sample
puts Python back in the hot loop. These draw per-sample parameters and apply
them with tensor indexing, on whatever device the batch lives on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    translate: int = 2
    """Random crop after zero-padding by this many pixels on each side (0 = off)."""
    hflip: bool = True
    """Mirror half of the images left to right."""
    erase_prob: float = 0.0
    """Probability of random erasing per image (Zhong et al. 2017; 0 = off)."""
    erase_scale: tuple[float, float] = (0.02, 0.25)
    """Erased area as a fraction of the image."""

    def __post_init__(self) -> None:
        if not 0 <= self.translate <= 8:
            raise ValueError(f"augment.translate must be in 0..8, got {self.translate!r}")
        if not 0.0 <= self.erase_prob <= 1.0:
            raise ValueError(f"augment.erase_prob must be in [0, 1], got {self.erase_prob!r}")
        lo, hi = self.erase_scale
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"augment.erase_scale must satisfy 0 < lo <= hi < 1, got {self.erase_scale!r}")

    @property
    def enabled(self) -> bool:
        return self.translate > 0 or self.hflip or self.erase_prob > 0


def random_translate(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` and crop back to the original size at a random offset per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_erase(x: torch.Tensor, prob: float, scale: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Zero a random rectangle (area in `scale`, aspect ratio 0.3–3.3) in a fraction `prob` of images."""
    n, _, h, w = x.shape
    dev = x.device
    area = torch.empty(n, device=dev).uniform_(*scale, generator=generator) * h * w
    log_ratio = torch.empty(n, device=dev).uniform_(-1.2040, 1.2040, generator=generator)  # ln 0.3..ln 3.3
    ratio = log_ratio.exp()
    eh = (area * ratio).sqrt().round().clamp(1, h).long()
    ew = (area / ratio).sqrt().round().clamp(1, w).long()
    top = (torch.rand(n, generator=generator, device=dev) * (h - eh + 1)).long()
    left = (torch.rand(n, generator=generator, device=dev) * (w - ew + 1)).long()
    apply = torch.rand(n, generator=generator, device=dev) < prob
    r = torch.arange(h, device=dev)[None, :]
    c = torch.arange(w, device=dev)[None, :]
    in_rows = (r >= top[:, None]) & (r < (top + eh)[:, None])
    in_cols = (c >= left[:, None]) & (c < (left + ew)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)


def augment_batch(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply the configured augmentations to a float batch [N, C, H, W]."""
    if config.translate:
        x = random_translate(x, config.translate, generator)
    if config.hflip:
        x = random_hflip(x, generator)
    if config.erase_prob > 0:
        x = random_erase(x, config.erase_prob, config.erase_scale, generator)
    return x
