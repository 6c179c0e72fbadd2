"""Per-sample torchvision transforms for the DataLoader path (the reference the fast path is measured against)."""

from __future__ import annotations

from torchvision.transforms import v2

from training.augment import AugmentConfig


class TrainPreset:
    """The same augmentations as `augment_batch`, one image at a time, with torchvision v2."""

    def __init__(self, cfg: AugmentConfig):
        steps = []
        if cfg.translate:
            steps.append(v2.RandomCrop(28, padding=cfg.translate))
        if cfg.hflip:
            steps.append(v2.RandomHorizontalFlip())
        if cfg.erase_prob:
            steps.append(v2.RandomErasing(p=cfg.erase_prob, scale=cfg.erase_scale, value=0))
        self.transforms = v2.Compose(steps) if steps else None

    def __call__(self, image):
        return self.transforms(image) if self.transforms is not None else image
