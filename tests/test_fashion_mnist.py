"""The data layer: IDX parsing, checksums, locating and downloading Fashion-MNIST."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torchvision import transforms

from training import fashion_mnist
from training.data import ArrayDataset
from training.fashion_mnist import FILES, DatasetError
from training.idx import IdxFormatError, read_idx, read_labelled_images


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A private copy of the real files that a test may damage."""
    for name, _ in FILES.values():
        shutil.copy(fashion_mnist.locate(download=False) / name, tmp_path / name)
    return tmp_path


@pytest.fixture(scope="module")
def torchvision_root(fmnist, tmp_path_factory) -> Path:
    """The same four files laid out the way torchvision.datasets.FashionMNIST reads them."""
    root = tmp_path_factory.mktemp("torchvision")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, _ in FILES.values():
        (raw / name.removesuffix(".gz")).write_bytes(gzip.decompress((fmnist.source / name).read_bytes()))
    return root


def test_arrays_match_torchvision_pixel_and_label_exact(fmnist, torchvision_root):
    for train, images, labels in ((True, fmnist.train_images, fmnist.train_labels),
                                  (False, fmnist.test_images, fmnist.test_labels)):  # fmt: skip
        reference = torchvision.datasets.FashionMNIST(torchvision_root, train=train, download=False)
        assert np.array_equal(reference.data.numpy(), images)
        assert np.array_equal(reference.targets.numpy(), labels)
    assert len(fmnist.train_labels) == 60000 and len(fmnist.test_labels) == 10000


def test_dataset_items_equal_torchvision_items(fmnist, torchvision_root):
    """Our Dataset yields exactly what torchvision's FashionMNIST + ToTensor yields."""
    reference = torchvision.datasets.FashionMNIST(torchvision_root, train=False, transform=transforms.ToTensor())
    ours = ArrayDataset(fmnist.test_images, fmnist.test_labels)
    for i in range(0, 10000, 97):
        (image, label), (expected, expected_label) = ours[i], reference[i]
        assert torch.equal(image, expected)
        assert label == expected_label


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28))))[:-20])
    with pytest.raises(IdxFormatError, match=r"images\.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_wrong_magic_number_is_refused(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x02\x08\x03" + bytes(100))
    with pytest.raises(IdxFormatError, match=r"bad\.idx: wrong magic number 0x01020803"):
        read_idx(path)


def test_truncated_payload_reports_expected_size(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(idx_bytes(np.zeros((10, 28, 28)))[:-5])
    with pytest.raises(IdxFormatError, match=r"short\.idx: truncated: header shape \(10, 28, 28\)"):
        read_idx(path)


def test_image_label_count_mismatch_names_both_files(tmp_path):
    (tmp_path / "img").write_bytes(idx_bytes(np.zeros((5, 28, 28))))
    (tmp_path / "lab").write_bytes(idx_bytes(np.zeros(4)))
    with pytest.raises(IdxFormatError, match=r"img has 5 images but .*lab has 4 labels"):
        read_labelled_images(tmp_path / "img", tmp_path / "lab")


def test_missing_file_is_a_clear_error(data_copy):
    (data_copy / FILES["test_labels"][0]).unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: file not found"):
        fashion_mnist.load(data_copy)


def test_checksum_mismatch_is_refused(data_copy):
    target = data_copy / FILES["train_labels"][0]
    labels = read_idx(target)
    labels = labels.copy()
    labels[0] = (labels[0] + 1) % 10  # one flipped label: still a valid IDX file
    target.write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte\.gz: checksum mismatch"):
        fashion_mnist.load(data_copy)


def test_env_var_takes_precedence_over_debian_package(data_copy, monkeypatch):
    monkeypatch.setenv("WARDROBE_DATA_DIR", str(data_copy))
    assert fashion_mnist.load().source == data_copy


def test_no_download_fails_clearly_when_nothing_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("WARDROBE_DATA_DIR", raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="downloading is disabled"):
        fashion_mnist.locate(download=False)


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server standing in for the official host (same code path, no network)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_and_keeps_good_files(fmnist, file_server, tmp_path):
    root, url = file_server
    for name, _ in FILES.values():
        shutil.copy(fmnist.source / name, root / name)
    fashion_mnist.download_official(tmp_path / "cache", base_url=url)
    assert fashion_mnist.load(tmp_path / "cache").checksum == fmnist.checksum


def test_download_refuses_a_tampered_file_and_keeps_nothing_of_it(fmnist, file_server, tmp_path):
    root, url = file_server
    for name, _ in FILES.values():
        shutil.copy(fmnist.source / name, root / name)
    (root / FILES["train_images"][0]).write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28)))))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch"):
        fashion_mnist.download_official(tmp_path / "cache", base_url=url)
    assert not (tmp_path / "cache" / FILES["train_images"][0]).exists()
    assert not list((tmp_path / "cache").glob("*.tmp"))
