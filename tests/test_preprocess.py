"""contract.preprocess: safe decoding and the photo -> Fashion-MNIST crop recipe."""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image

from contract.preprocess import (
    ImageError,
    decode_image,
    load_image_file,
    to_fashion_mnist,
    to_model_input,
)
from photo_sim.photolike import make_photo_like


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def product_photo(width: int = 400, height: int = 300) -> Image.Image:
    """A dark-blue 60×150 'garment' off-centre on a light grey background."""
    pixels = np.full((height, width, 3), 236, dtype=np.uint8)
    pixels[40:190, 250:310] = (20, 30, 90)
    return Image.fromarray(pixels, "RGB")


def garment_box(crop: np.ndarray, level: int = 60) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((crop > level).any(axis=1))
    cols = np.flatnonzero((crop > level).any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


@pytest.fixture(scope="module")
def reference():
    return to_fashion_mnist(product_photo())


# --- Fashion-MNIST crops pass through -------------------------------------------------


def test_test_split_crops_pass_through_pixel_identical(fmnist):
    crops = fmnist.test_images[:300]
    for crop in crops:
        decoded = decode_image(encode(Image.fromarray(crop), "PNG"))
        np.testing.assert_array_equal(to_fashion_mnist(decoded), crop)


def test_crops_saved_as_rgb_pass_through_pixel_identical(fmnist):
    for crop in fmnist.test_images[300:340]:
        rgb = Image.fromarray(crop).convert("RGB")
        np.testing.assert_array_equal(to_fashion_mnist(decode_image(encode(rgb, "PNG"))), crop)


def test_a_grey_28x28_crop_passes_through_only_when_upright_and_on_a_dark_ground(fmnist):
    crop = fmnist.test_images[0]
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 3  # stored upside down, shown the right way up
    turned = decode_image(encode(Image.fromarray(crop[::-1, ::-1].copy()), "PNG", exif=exif))
    np.testing.assert_array_equal(to_fashion_mnist(turned), crop)
    on_white = to_fashion_mnist(decode_image(encode(Image.fromarray(255 - crop), "PNG")))
    assert on_white[0, 0] == 0 and on_white[14, 14] > 100  # negated onto black, not passed through


# --- photos become crops ----------------------------------------------------------------


def test_product_photo_is_trimmed_negated_resized_and_centred(reference):
    crop = to_fashion_mnist(decode_image(encode(product_photo(), "JPEG", quality=80)))
    assert crop.shape == (28, 28) and crop.dtype == np.uint8
    top, bottom, left, right = garment_box(crop)
    assert (top, bottom) == (0, 28)  # the longest side spans the frame, as in Fashion-MNIST
    assert 10 <= right - left <= 13  # 60/150 of 28 is 11.2; aspect kept
    assert abs(left - (28 - right)) <= 1  # centred by bounding box
    assert crop[14, 14] > 200  # a dark garment becomes white
    assert crop[:, :5].max() < 20 and crop[:, -5:].max() < 20  # on black
    assert np.abs(crop.astype(int) - reference).mean() < 15  # JPEG ringing widens it a little


def test_gradient_and_noise_in_the_background_are_not_garment():
    rng = np.random.default_rng(0)
    light = np.linspace(200, 250, 500)[None, :, None]
    pixels = light + rng.normal(0, 3, size=(400, 500, 3))
    pixels[100:300, 120:220] = 40
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    crop = to_fashion_mnist(decode_image(encode(photo, "JPEG", quality=70)))
    top, bottom, left, right = garment_box(crop)
    assert (top, bottom) == (0, 28) and 13 <= right - left <= 15


def test_photo_like_test_images_come_back_close_to_the_original(fmnist):
    rng = np.random.default_rng(0)
    overlaps = []
    for crop in fmnist.test_images[:20]:
        data, _ = make_photo_like(crop, rng)
        back = to_fashion_mnist(decode_image(data))
        overlaps.append(((back > 30) & (crop > 30)).sum() / ((back > 30) | (crop > 30)).sum())
    # flat sandals lose most when off by one row, and the opening that keeps a hanger out of the
    # crop (contract/isolate.py) trims their thinnest straps too: hence the lower bound per image
    assert np.mean(overlaps) > 0.8 and min(overlaps) > 0.35, overlaps


def test_exif_orientation_is_applied():
    stored = product_photo().rotate(90, expand=True)  # the camera stored it lying down
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    upright = to_fashion_mnist(decode_image(encode(stored, "JPEG", exif=exif)))
    top, bottom, left, right = garment_box(upright)
    assert bottom - top == 28 and right - left < 15


def test_a_blank_image_gives_a_black_crop():
    blank = Image.new("RGB", (300, 200), (240, 240, 240))
    assert to_fashion_mnist(decode_image(encode(blank, "PNG"))).max() == 0


# --- every accepted format and mode decodes to the same crop ---------------------------


def _rgba(photo: Image.Image) -> Image.Image:
    # the garment opaque, the background transparent: must be flattened onto white
    rgba = photo.convert("RGBA")
    alpha = (np.asarray(photo.convert("L")) < 128).astype(np.uint8) * 255
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def _sixteen_bit(photo: Image.Image) -> Image.Image:
    grey = np.asarray(photo.convert("L")).astype(np.uint16) * 257
    return Image.fromarray(grey)


CASES = {
    "PNG RGB": lambda p: encode(p, "PNG"),
    "PNG RGBA": lambda p: encode(_rgba(p), "PNG"),
    "PNG LA": lambda p: encode(_rgba(p).convert("LA"), "PNG"),
    "PNG P": lambda p: encode(p.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    "PNG 16-bit": lambda p: encode(_sixteen_bit(p), "PNG"),
    "TIFF 16-bit": lambda p: encode(_sixteen_bit(p), "TIFF"),
    "JPEG CMYK": lambda p: encode(p.convert("CMYK"), "JPEG", quality=95),
    "JPEG L": lambda p: encode(p.convert("L"), "JPEG", quality=95),
    "WebP": lambda p: encode(p, "WEBP", quality=90),
    "HEIC": lambda p: encode(p, "HEIF", quality=90),
    "HEIC RGBA": lambda p: encode(_rgba(p), "HEIF", quality=90),
    "HEIC 10-bit grey": lambda p: encode(_sixteen_bit(p), "HEIF", quality=90),  # decodes as I;16
    "AVIF": lambda p: encode(p, "AVIF", quality=90),
    "AVIF RGBA": lambda p: encode(_rgba(p), "AVIF", quality=90),
    "BMP": lambda p: encode(p, "BMP"),
    "TIFF": lambda p: encode(p, "TIFF"),
    "GIF": lambda p: encode(p, "GIF"),
}


@pytest.mark.parametrize("case", CASES)
def test_accepted_formats_and_modes_give_the_same_crop(case, reference):
    crop = to_fashion_mnist(decode_image(CASES[case](product_photo())))
    assert np.abs(crop.astype(int) - reference).mean() < 6, case


def test_animated_gif_uses_the_first_frame(reference):
    frames = [product_photo(), Image.new("RGB", (400, 300), (236, 236, 236))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    crop = to_fashion_mnist(decode_image(data))
    assert np.abs(crop.astype(int) - reference).mean() < 6


# --- what is refused ---------------------------------------------------------------------


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("shoe.png", encode(product_photo(), "PNG"))
    return buffer.getvalue()


REFUSED = {
    "empty": (b"", "empty file"),
    "text": (b"label,confidence\nSneaker,0.9\n", "unsupported file type: text"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "an SVG drawing"),
    "xml svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    "pdf": (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "a PDF document"),
    "zip": (_zip(), "a ZIP archive"),
    "ico": (encode(Image.new("RGB", (32, 32)), "ICO"), "an ICO icon"),
    "truncated png": (encode(product_photo(), "PNG")[:-300], "truncated or corrupt PNG"),
    "truncated jpeg": (encode(product_photo(), "JPEG")[:1500], "truncated or corrupt JPEG"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_unacceptable_bytes_raise_image_error_saying_why(case):
    data, message = REFUSED[case]
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width × height: a decompression bomb's calling card."""
    png = encode(Image.new("L", (1, 1)), "PNG")
    header = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + png[24:29]
    return png[:12] + header + zlib.crc32(header).to_bytes(4, "big") + png[33:]


def test_too_many_pixels_are_refused_before_decoding():
    with pytest.raises(ImageError, match="10000×5000 = 50,000,000 pixels, over the limit"):
        decode_image(png_claiming(10_000, 5_000))  # decoding would take 50 MB, never done
    with pytest.raises(ImageError, match="image too large"):
        decode_image(png_claiming(20_000, 20_000))  # Pillow's own bomb check fires first
    with pytest.raises(ImageError, match="over the limit 10,000"):
        decode_image(encode(Image.new("RGB", (200, 100)), "PNG"), max_pixels=10_000)


def test_unreadable_file_raises_image_error(tmp_path):
    with pytest.raises(ImageError, match="cannot read file"):
        load_image_file(tmp_path / "missing.png")
    path = tmp_path / "shoe.webp"
    path.write_bytes(encode(product_photo(), "WEBP"))
    assert load_image_file(path).size == (400, 300)


def test_model_input_is_float_in_unit_range():
    crops = [np.full((28, 28), 255, np.uint8), np.zeros((28, 28), np.uint8)]
    batch = to_model_input(crops)
    assert batch.shape == (2, 1, 28, 28) and batch.dtype == np.float32
    assert batch[0].min() == 1.0 and batch[1].max() == 0.0
    with pytest.raises(ValueError, match=r"crops must be 28×28, got \[32, 32\]"):
        to_model_input([np.zeros((32, 32), np.uint8)])


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 3), (7, 7), (300, 1), (1, 300), (7, 500)])
def test_an_image_too_small_to_hold_a_garment_is_refused_saying_the_smallest(size):
    width, height = size
    with pytest.raises(ImageError, match=rf"image is {width}×{height} pixels, too small .*smallest accepted: 8×8"):
        decode_image(encode(Image.new("RGB", size, "white"), "PNG"))


def test_the_smallest_accepted_image_is_classified_as_blank_or_garment():
    crop = to_fashion_mnist(decode_image(encode(Image.new("RGB", (8, 8), "white"), "PNG")))
    assert crop.shape == (28, 28) and not crop.any()
