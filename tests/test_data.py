"""The two loader paths, augmentation and the image-folder dataset (the split: tests/test_split.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from training.augment import AugmentConfig, augment_batch, random_erase, random_translate
from training.data import ImageFolderDataset, TensorBatchLoader


def test_tensor_loader_visits_every_image_once_per_epoch():
    images = np.arange(1000, dtype=np.uint8).reshape(1000, 1, 1).repeat(28, 1).repeat(28, 2) % 251
    labels = np.arange(1000)
    loader = TensorBatchLoader(images, labels, 64, torch.device("cpu"), shuffle=True, seed=1)
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(1000))
    loader.set_epoch(1)
    assert not torch.equal(torch.cat([y for _, y in loader]), seen)  # reshuffled per epoch


def test_tensor_loader_shards_are_disjoint_and_cover_everything():
    labels = np.arange(1000)
    images = np.zeros((1000, 28, 28), dtype=np.uint8)
    shards = [
        torch.cat(
            [y for _, y in TensorBatchLoader(images, labels, 50, torch.device("cpu"), True, None, 0, False, r, 2)]
        )
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 500
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())


def test_translate_keeps_shape_and_moves_content():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    out = random_translate(x, 3, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.allclose(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # content fits after a shift of 3
    assert (out != x).any()


def test_erase_zeroes_a_rectangle_only_where_applied():
    x = torch.ones(200, 1, 28, 28)
    out = random_erase(x, prob=0.5, scale=(0.1, 0.2), generator=torch.Generator().manual_seed(0))
    erased = (out == 0).flatten(1).sum(1).float() / (28 * 28)
    hit = erased > 0
    assert 0.3 < hit.float().mean() < 0.7
    assert erased[hit].min() > 0.04 and erased[hit].max() < 0.3


def test_augment_config_refuses_bad_values():
    with pytest.raises(ValueError, match=r"augment.erase_prob must be in \[0, 1\], got 1.5"):
        AugmentConfig(erase_prob=1.5)


def test_augment_batch_is_reproducible_for_a_seed():
    x = torch.rand(32, 1, 28, 28)
    cfg = AugmentConfig(translate=2, hflip=True, erase_prob=0.5)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_image_folder_dataset_reads_class_folders(fmnist, tmp_path):
    for class_dir, index in (("Sneaker", 0), ("t-shirt_top", 1)):
        (tmp_path / class_dir).mkdir()
        Image.fromarray(fmnist.test_images[index]).save(tmp_path / class_dir / "a.png")
    ds = ImageFolderDataset(tmp_path)
    assert len(ds) == 2
    labels = sorted(ds[i][1] for i in range(2))
    assert labels == [0, 7]
    image, _ = ds[[ds[i][1] for i in range(2)].index(7)]
    assert image.shape == (1, 28, 28)


def test_image_folder_dataset_names_an_unknown_class_folder(tmp_path):
    (tmp_path / "socks").mkdir()
    with pytest.raises(ValueError, match=r"socks: folder name is not a class"):
        ImageFolderDataset(tmp_path)
