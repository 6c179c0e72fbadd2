"""Phone photos: HEIC/HEIF and AVIF decode like any photo; large photos decode at reduced scale."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from contract.preprocess import (
    DECODE_SIZE,
    ImageError,
    decode_image,
    to_fashion_mnist,
    to_model_input,
)
from contract.runtime import load_model
from photo_sim.photolike import make_photo_like, phone_photo
from training.data import ImageFolderDataset

MODEL = Path(__file__).resolve().parents[1] / "models" / "cnn.onnx"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def product_photo(width: int = 400, height: int = 300) -> Image.Image:
    """A dark-blue 'garment' (3/20 of the width, half the height) off-centre on light grey."""
    pixels = np.full((height, width, 3), 236, dtype=np.uint8)
    pixels[height * 2 // 15 : height * 19 // 30, width * 5 // 8 : width * 31 // 40] = (20, 30, 90)
    return Image.fromarray(pixels, "RGB")


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


@pytest.fixture(scope="module")
def classifier():
    return load_model(MODEL, device="cpu", threads=1)


@pytest.fixture(scope="module")
def reference():
    return to_fashion_mnist(product_photo())


# --- ISO-BMFF surgery: what a phone writes that pillow-heif does not -----------------------


def _boxes(data: bytes | bytearray, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    boxes = {}
    while start < end:
        size, kind = struct.unpack_from(">I4s", data, start)
        boxes[kind] = (start, start + size)
        start += size
    return boxes


def with_irot(heif: bytes, quarter_turns: int) -> bytes:
    """Give the primary image of a small HEIC an `irot` property (anticlockwise quarter turns).

    iPhones store pixels as the sensor saw them and say how to turn them in `irot`; the EXIF
    orientation beside it is informative only. pillow-heif cannot write one, so we add it: a
    9-byte box in `ipco`, its association in `ipma`, and every data offset in `iloc` shifted.
    """
    data = bytearray(heif)
    meta = _boxes(data, 0, len(data))[b"meta"]
    inside = _boxes(data, meta[0] + 12, meta[1])
    iprp = inside[b"iprp"]
    ipco, ipma = (_boxes(data, iprp[0] + 8, iprp[1])[k] for k in (b"ipco", b"ipma"))
    primary = struct.unpack_from(">H", data, inside[b"pitm"][0] + 12)[0]
    grow = 9 + 1  # the irot box, one association byte
    # iloc (version 0/1, before iprp): shift the file offsets of the data in mdat.
    iloc = inside[b"iloc"][0]
    version = data[iloc + 8]
    offset_size, length_size = data[iloc + 12] >> 4, data[iloc + 12] & 15
    base_size, index_size = data[iloc + 13] >> 4, (data[iloc + 13] & 15 if version else 0)
    assert version in (0, 1) and base_size in (0, 4) and offset_size in (0, 4), "unexpected iloc layout"

    def shift(at: int) -> None:
        struct.pack_into(">I", data, at, struct.unpack_from(">I", data, at)[0] + grow)

    count, pos = struct.unpack_from(">H", data, iloc + 14)[0], iloc + 16
    for _ in range(count):
        in_file = not version or data[pos + 3] & 15 == 0  # construction method 0: file offsets
        pos += 2 + (2 if version else 0) + 2  # item id, construction method, data reference
        if in_file and base_size:
            shift(pos)
        pos += base_size
        extents, pos = struct.unpack_from(">H", data, pos)[0], pos + 2
        for _ in range(extents):
            pos += index_size
            if in_file and not base_size:
                shift(pos)
            pos += offset_size + length_size
    # ipma (version 0, 1-byte associations): associate property number n+1, essential.
    assert data[ipma[0] + 8] == 0 and not data[ipma[0] + 11] & 1, "unexpected ipma layout"
    properties = len(_boxes(data, ipco[0] + 8, ipco[1]))
    pos = ipma[0] + 16
    for _ in range(struct.unpack_from(">I", data, ipma[0] + 12)[0]):
        item, associations = struct.unpack_from(">HB", data, pos)
        if item == primary:
            data[pos + 3 + associations : pos + 3 + associations] = bytes([0x80 | (properties + 1)])
            data[pos + 2] += 1
        pos += 3 + associations
    for start, extra in ((ipma[0], 1), (ipco[0], 9), (iprp[0], grow), (meta[0], grow)):
        struct.pack_into(">I", data, start, struct.unpack_from(">I", data, start)[0] + extra)
    data[ipco[1] : ipco[1]] = struct.pack(">I4sB", 9, b"irot", quarter_turns)
    return bytes(data)


def claiming_size(data: bytes, width: int, height: int) -> bytes:
    """The same HEIC/AVIF whose `ispe` (the size in the header) claims width × height."""
    at = data.index(b"ispe") + 8  # after the type and the full-box version/flags
    return data[:at] + struct.pack(">II", width, height) + data[at + 8 :]


# --- HEIC/HEIF and AVIF are photos like any other --------------------------------------------


def enlarged(photo: bytes, longest: int, fmt: str, rng: np.random.Generator) -> bytes:
    """A photo-like upload as a phone photo whose longest side is `longest`, aspect kept."""
    width, height = Image.open(io.BytesIO(photo)).size
    scale = longest / max(width, height)
    return phone_photo(photo, (round(width * scale), round(height * scale)), fmt, rng)


def test_heic_and_avif_classify_like_the_jpeg_of_the_same_photo(fmnist, classifier):
    rng = np.random.default_rng(3)
    picks = rng.choice(len(fmnist.test_labels), size=6, replace=False)
    crops = {"JPEG": [], "HEIF": [], "AVIF": []}
    for index in picks:
        photo, _ = make_photo_like(fmnist.test_images[index], rng)
        for fmt, found in crops.items():
            found.append(to_fashion_mnist(decode_image(enlarged(photo, 800, fmt, rng))))
    probabilities = {fmt: classifier.probabilities(to_model_input(c)) for fmt, c in crops.items()}
    jpeg = probabilities["JPEG"]
    top2 = np.sort(jpeg, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.1  # a photo on the fence between two classes may tip
    assert clear.sum() >= 4
    for fmt in ("HEIF", "AVIF"):
        np.testing.assert_array_equal(probabilities[fmt][clear].argmax(1), jpeg[clear].argmax(1), err_msg=fmt)
        assert np.abs(probabilities[fmt] - jpeg).max() < 0.15, fmt
        for mine, theirs in zip(crops[fmt], crops["JPEG"], strict=True):
            assert mean_difference(mine, theirs) < 4, fmt


def test_heic_irot_is_honoured(reference):
    stored = product_photo().rotate(-90, expand=True)  # the sensor saw it turned clockwise
    data = with_irot(encode(stored, "HEIF", quality=90), quarter_turns=1)
    assert encode(stored, "HEIF", quality=90).count(b"irot") == 0 and data.count(b"irot") == 1
    image = decode_image(data)
    assert image.size == (400, 300)
    assert mean_difference(to_fashion_mnist(image), reference) < 6


def test_avif_orientation_is_honoured(reference):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"; Pillow writes it as AVIF irot
    data = encode(product_photo().rotate(90, expand=True), "AVIF", quality=90, exif=exif)
    assert b"irot" in data
    assert mean_difference(to_fashion_mnist(decode_image(data)), reference) < 6


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_first_image_of_a_heic_or_avif_sequence_is_used(fmt, reference):
    frames = [product_photo(), Image.new("RGB", (400, 300), (236, 236, 236))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], quality=90)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert mean_difference(to_fashion_mnist(decode_image(data)), reference) < 6


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_over_the_pixel_limit_are_refused_from_the_header(fmt):
    data = encode(product_photo(), fmt, quality=50)
    # The pixels are 400×300; only the header claims more. Decoding would fail differently.
    with pytest.raises(ImageError, match="10000×5000 = 50,000,000 pixels, over the limit"):
        decode_image(claiming_size(data, 10_000, 5_000))
    with pytest.raises(ImageError, match="400×300 = 120,000 pixels, over the limit 100,000"):
        decode_image(data, max_pixels=100_000)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_truncated_heic_and_avif_say_so(fmt):
    data = encode(product_photo(), fmt, quality=90)
    for cut in (40, len(data) - 50):
        with pytest.raises(ImageError, match=r"truncated or corrupt (HEIC/AVIF|HEIF|AVIF) data"):
            decode_image(data[:cut])


def test_a_video_is_named_as_such():
    mp4 = struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 512) + bytes(64)
    with pytest.raises(ImageError, match=r"a video \(MP4/MOV\).*accepted: JPEG, PNG, WebP, HEIC/HEIF, AVIF"):
        decode_image(mp4)


def test_image_folder_dataset_reads_heic_and_avif(tmp_path, reference):
    for name, fmt in (("shirt.heic", "HEIF"), ("shirt.avif", "AVIF"), ("shirt.jpg", "JPEG")):
        folder = tmp_path / "Shirt"
        folder.mkdir(exist_ok=True)
        (folder / name).write_bytes(encode(product_photo(), fmt, quality=90))
    dataset = ImageFolderDataset(tmp_path)
    assert len(dataset) == 3
    for image, label in dataset:
        assert label == 6 and mean_difference(np.rint(image[0].numpy() * 255), reference) < 6


# --- reduced-scale decoding -----------------------------------------------------------------


def test_a_12_mp_jpeg_decodes_at_one_eighth_scale_in_the_dct():
    data = encode(product_photo(4032, 3024), "JPEG", quality=90)
    assert decode_image(data).size == (504, 378)
    assert decode_image(data, longest_side=None).size == (4032, 3024)
    assert decode_image(data, longest_side=1000).size == (1008, 756)


@pytest.mark.parametrize("mode", ["RGB", "CMYK", "L"])
def test_jpeg_of_every_mode_decodes_at_reduced_scale_to_the_same_crop(mode):
    data = encode(product_photo(2000, 1500).convert(mode), "JPEG", quality=90)
    reduced, full = decode_image(data), decode_image(data, longest_side=None)
    assert reduced.size == (500, 375) and reduced.mode == mode  # 1/4 scale: 1/8 would be under 280
    assert mean_difference(to_fashion_mnist(reduced), to_fashion_mnist(full)) < 3


def test_a_heic_is_decoded_from_its_pixels_not_its_thumbnail():
    # An iPhone-like 320-px thumbnail is big enough, but moved crops (see contract/preprocess.py).
    with_thumbnail = encode(product_photo(800, 600), "HEIF", quality=50, thumbnails=[320])
    assert Image.open(io.BytesIO(with_thumbnail)).draft(None, (280, 210)) is None
    assert decode_image(with_thumbnail).size == (400, 300)  # decoded in full, box-reduced by 2


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF", "TIFF"])
def test_other_formats_are_box_reduced_right_after_decoding(fmt):
    image = decode_image(encode(product_photo(2000, 1500), fmt))
    assert DECODE_SIZE <= max(image.size) < 2 * DECODE_SIZE


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


ROTATED = {  # a 2000×1500 photo stored turned, with the orientation that turns it back
    "JPEG": lambda p: encode(p.rotate(90, expand=True), "JPEG", quality=90, exif=_exif(6)),
    "PNG": lambda p: encode(p.rotate(90, expand=True), "PNG", exif=_exif(6)),
    "WEBP": lambda p: encode(p.rotate(-90, expand=True), "WEBP", exif=_exif(8)),
    "TIFF": lambda p: encode(p.rotate(180), "TIFF", exif=_exif(3)),
}


@pytest.mark.parametrize("fmt", ROTATED)
def test_orientation_survives_reduced_scale_decoding(fmt):
    photo = product_photo(2000, 1500)
    data = ROTATED[fmt](photo)
    upright = to_fashion_mnist(photo)
    reduced, full = decode_image(data), decode_image(data, longest_side=None)
    assert max(reduced.size) < 2 * DECODE_SIZE
    assert mean_difference(to_fashion_mnist(reduced), upright) < 6
    assert mean_difference(to_fashion_mnist(full), upright) < 6


def test_transparency_survives_reduced_scale_decoding():
    photo = product_photo(2000, 1500).convert("RGBA")
    alpha = np.where(np.asarray(photo.convert("L")) < 128, 255, 0).astype(np.uint8)
    photo.putalpha(Image.fromarray(alpha))  # garment opaque, background transparent
    data = encode(photo, "PNG")
    reduced, full = decode_image(data), decode_image(data, longest_side=None)
    assert reduced.mode == "RGBA" and max(reduced.size) < 2 * DECODE_SIZE
    assert mean_difference(to_fashion_mnist(reduced), to_fashion_mnist(full)) < 2


@pytest.mark.slow
def test_reduced_scale_decoding_predicts_like_full_decoding(fmnist, classifier):
    """A small version of benchmarks/photo_accuracy.py's agreement figure (goal: ≥ 99%).

    JPEG is where decoding itself changes (the scaled IDCT); the other formats only box-reduce
    earlier, which PNG stands for here (the benchmark has them all).
    """
    rng = np.random.default_rng(7)
    formats = ["JPEG"] * 30 + ["PNG"] * 4
    picks = rng.choice(len(fmnist.test_labels), size=len(formats), replace=False)
    reduced, full = [], []
    for index, fmt in zip(picks, formats, strict=True):
        photo, _ = make_photo_like(fmnist.test_images[index], rng)
        data = enlarged(photo, int(rng.integers(1000, 2000)), fmt, rng)
        reduced.append(to_fashion_mnist(decode_image(data)))
        full.append(to_fashion_mnist(decode_image(data, longest_side=None)))
    p_reduced, p_full = (classifier.probabilities(to_model_input(crops)) for crops in (reduced, full))
    agree = p_reduced.argmax(1) == p_full.argmax(1)
    top2 = np.sort(p_full, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.1
    # A photo on the fence between two classes tips either way on a one-pixel shift of the
    # garment's box, which any change of resampling causes; no clear prediction may move.
    assert agree[clear].all(), [fmt for fmt, same in zip(formats, agree, strict=True) if not same]
    assert agree.mean() >= 0.9 and clear.mean() >= 0.8
    assert np.abs(p_reduced - p_full).max(axis=1).mean() < 0.05
