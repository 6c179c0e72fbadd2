"""Reader for the IDX file format that (Fashion-)MNIST ships in, gzip or raw."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

# IDX magic: two zero bytes, a type code, then the number of dimensions.
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """An IDX file is missing, truncated, corrupt or not what was expected."""


def read_idx_bytes(path: Path) -> bytes:
    """Return the decompressed contents of an IDX file (gzip detected by its magic)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise IdxFormatError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IdxFormatError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def parse_idx(data: bytes, name: str, expected_ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into an array, checking the header against the payload size."""
    if len(data) < 4:
        raise IdxFormatError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise IdxFormatError(f"{name}: wrong magic number 0x{data[:4].hex()} (not an IDX file)")
    dtype, ndim = _DTYPES[data[2]], data[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise IdxFormatError(f"{name}: expected {expected_ndim} dimensions, header says {ndim}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxFormatError(f"{name}: truncated header ({len(data)} of {header_size} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise IdxFormatError(f"{name}: {kind}: header shape {shape} needs {expected} bytes, file has {len(data)}")
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)  # writable and native-endian


def read_idx(path: Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a numpy array."""
    return parse_idx(read_idx_bytes(path), str(path), expected_ndim)


def check_pair(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    """Refuse an image file and a label file whose item counts differ."""
    if len(images) != len(labels):
        raise IdxFormatError(f"{images_name} has {len(images)} images but {labels_name} has {len(labels)} labels")


def read_labelled_images(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file ([N, H, W]) and its labels file ([N]), checking they match."""
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    check_pair(images, labels, str(images_path), str(labels_path))
    return images, labels
