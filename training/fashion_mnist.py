"""Locating, verifying and loading the Fashion-MNIST files.

Search order: an explicit directory > $WARDROBE_DATA_DIR > Debian's
`dataset-fashion-mnist` package > the user cache (downloaded on demand from the
official URLs). Every file is verified by the SHA-256 of its *decompressed*
contents: Debian recompresses the .gz files, so upstream's MD5s of the .gz do
not apply, but the payload is identical.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.files import make_temp_beside, move_into_place
from training.idx import IdxFormatError, check_pair, parse_idx, read_idx_bytes

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# SHA-256 of the decompressed IDX payloads, computed from Debian's package.
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}  # fmt: skip
OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetError(RuntimeError):
    """The dataset cannot be found, fetched or verified."""


@dataclass(frozen=True)
class FashionMNIST:
    """All 70k images (uint8, [N, 28, 28]) and labels (int64, [N]) with their provenance."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: Path
    sha256: dict[str, str]

    @property
    def checksum(self) -> str:
        """One checksum naming the whole dataset (SHA-256 over the four file digests)."""
        joined = "".join(self.sha256[key] for key in sorted(self.sha256))
        return hashlib.sha256(joined.encode()).hexdigest()


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wardrobe" / "fashion-mnist"


def _has_all_files(directory: Path) -> bool:
    return all((directory / name).is_file() for name, _ in FILES.values())


def locate(data_dir: Path | str | None = None, download: bool = True) -> Path:
    """Return the directory holding the four files, downloading into the cache if allowed."""
    if data_dir is not None:
        return Path(data_dir)  # explicit choice: errors about its files name it
    if env_dir := os.environ.get("WARDROBE_DATA_DIR"):
        return Path(env_dir)
    if _has_all_files(DEBIAN_DIR):
        return DEBIAN_DIR
    cache = user_cache_dir()
    if _has_all_files(cache):
        return cache
    if not download:
        raise DatasetError(
            f"Fashion-MNIST not found in {DEBIAN_DIR} or {cache} and downloading is disabled; "
            "install Debian's dataset-fashion-mnist, set WARDROBE_DATA_DIR, or allow the download"
        )
    download_official(cache)
    return cache


def download_official(directory: Path, base_url: str = OFFICIAL_URL) -> None:
    """Fetch the four files from the official URLs, verifying each before it is kept."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, sha in FILES.values():
        target = directory / name
        if target.is_file():
            continue
        try:
            with urllib.request.urlopen(base_url + name, timeout=60) as response:
                payload = response.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DatasetError(f"cannot download {base_url + name}: {exc}") from None
        tmp = make_temp_beside(target)
        try:
            tmp.write_bytes(payload)
            _verify(tmp, sha, label=base_url + name)
            move_into_place(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def _verify(path: Path, expected_sha: str, label: str | None = None) -> bytes:
    data = read_idx_bytes(path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha:
        raise DatasetError(
            f"{label or path}: checksum mismatch (SHA-256 of contents {actual[:16]}…, "
            f"expected {expected_sha[:16]}…); the file is corrupt or not Fashion-MNIST"
        )
    return data


def load(data_dir: Path | str | None = None, download: bool = True) -> FashionMNIST:
    """Locate, verify and read all four files."""
    directory = locate(data_dir, download)
    arrays, digests = {}, {}
    for key, (name, sha) in FILES.items():
        path = directory / name
        if not path.is_file():
            raise DatasetError(f"{path}: file not found")
        try:
            data = _verify(path, sha)
            arrays[key] = parse_idx(data, str(path), 3 if key.endswith("images") else 1)
        except IdxFormatError as exc:
            raise DatasetError(str(exc)) from None
        digests[key] = sha
    for split in ("train", "test"):
        images_name, labels_name = (str(directory / FILES[f"{split}_{k}"][0]) for k in ("images", "labels"))
        try:
            check_pair(arrays[f"{split}_images"], arrays[f"{split}_labels"], images_name, labels_name)
        except IdxFormatError as exc:
            raise DatasetError(str(exc)) from None
    return FashionMNIST(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
        source=directory,
        sha256=digests,
    )
