"""Datasets and the two loader paths (the train/validation split is contract/split.py's).

The test split is never touched here except to hand it out for final
evaluation: early stopping and tuning see only the validation split.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from training.augment import AugmentConfig, augment_batch
from training.fashion_mnist import CLASSES


class ArrayDataset(Dataset):
    """Images (uint8 [N, 28, 28]) and labels as a map-style Dataset of ([1, 28, 28] float in [0, 1], label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[index])).float().div_(255)[None]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def _folder_to_class(name: str) -> int | None:
    key = name.lower().replace("_", " ").replace("-", " ").replace("/", " ")
    for i, cls in enumerate(CLASSES):
        if key == cls.lower().replace("-", " ").replace("/", " "):
            return i
    return None


class ImageFolderDataset(ArrayDataset):
    """A user's own photos, one sub-folder per class, turned into Fashion-MNIST-style input.

    Folder names are the class names (case-insensitive; '/', '-' and '_' are
    interchangeable, so `T-shirt_top` and `ankle boot` work). Each photo goes
    through the service's preprocessing, the same function that serving uses.
    """

    def __init__(self, root: Path | str, transform=None):
        from contract.preprocess import IMAGE_SUFFIXES, ImageError, load_image_file, to_fashion_mnist

        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: image folder not found")
        images, labels, self.paths = [], [], []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            class_id = _folder_to_class(folder.name)
            if class_id is None:
                raise ValueError(f"{folder}: folder name is not a class; expected one of {list(CLASSES)}")
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    images.append(to_fashion_mnist(load_image_file(path)))
                except ImageError as exc:
                    raise ValueError(f"{path}: {exc}") from None
                labels.append(class_id)
                self.paths.append(path)
        if not images:
            raise ValueError(f"{root}: no images found in class sub-folders")
        super().__init__(np.stack(images), np.array(labels, dtype=np.int64), transform)


class TensorBatchLoader:
    """The fast path: the whole split lives as one tensor on the training device and
    batches are sliced from it, augmented there in one go. Shards by rank for DDP
    the way DistributedSampler does (pad by repeating, then stride)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        marks: np.ndarray | None = None,
    ):
        """`marks`: an optional bool per image, yielded with each batch as a third tensor
        (fine-tuning marks the Fashion-MNIST replay images it distils on)."""
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)[:, None]
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.per_rank = math.ceil(len(self.labels) / world_size)
        self.marks = None if marks is None else torch.from_numpy(np.asarray(marks, dtype=bool)).to(device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            total = self.per_rank * self.world_size
            order = torch.cat([order, order[: total - n]])[self.rank :: self.world_size]
        return order.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self._indices()
        gen = torch.Generator(device=self.device).manual_seed((self.seed * 7919 + self.epoch) * 131 + self.rank)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.images[idx].float().div_(255)
            if self.augment is not None:
                x = augment_batch(x, self.augment, gen)
            yield (x, self.labels[idx]) if self.marks is None else (x, self.labels[idx], self.marks[idx])


def standard_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    workers: int = 2,
    seed: int = 0,
    pin_memory: bool | None = None,
) -> DataLoader:
    """The usual path: DataLoader with worker processes, pinned memory and persistent workers."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
