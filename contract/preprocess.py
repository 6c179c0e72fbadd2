"""Turning image bytes into model input: decode safely, then make a Fashion-MNIST-style crop.

One implementation for the HTTP service, `wardrobe predict`, the report and
training's ImageFolderDataset. `to_fashion_mnist` follows how Fashion-MNIST
was made from Zalando's product photos (Xiao et al. 2017, §2): trim the
background, resize the longest edge to 28, sharpen, centre by bounding box on
a 28×28 canvas, negate, 8-bit grey. Finding the garment in a home photo (colour,
uneven light, a hanger beside it) is contract/isolate.py's part. A 28×28 crop
that already looks like Fashion-MNIST (dark background) passes through unchanged.

Phone photos are large and the recipe needs a few hundred pixels, so
`decode_image` decodes at reduced scale where the format allows it (JPEG, in
the DCT: 1/2, 1/4 or 1/8); other formats are decoded in full and box-reduced
at once, so what follows costs what the work image needs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps
from pillow_heif import register_heif_opener

from contract.isolate import TRIM, garment_darkness

# HEIC/HEIF through libheif; AVIF is Pillow's own (11.3+). Depth maps and auxiliary images
# (HDR gain maps, portrait mattes) are never used here. Nor are embedded thumbnails, though
# decoding one would be far cheaper: measured on photo-like HEICs with 320-px thumbnails
# (libheif's), their crops differed from the full image's by up to 24 grey levels on average.
register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest width × height decoded (a 40 MP photo); checked from the header before any pixel is."""
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "AVIF", "BMP", "GIF", "TIFF")
"""Pillow format names we decode; "JPEG" also opens MPO, the multi-picture JPEG of many cameras,
"HEIF" the iPhone's HEIC."""
ACCEPTED_NAMES = "JPEG, PNG, WebP, HEIC/HEIF, AVIF, BMP, GIF, TIFF"
"""The same list as people know the formats, for messages."""
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".hif", ".avif", ".bmp", ".gif", ".tif", ".tiff"}
)
"""File name endings of those formats, for picking images out of a folder."""

SIZE = 28
MIN_SIDE = 8
"""Smallest width and height accepted: below it a garment is a handful of pixels, the background
border the isolator models (contract/isolate.py) is most of the image, and no answer means much."""
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's convert("L")
WORK_SIZE = 280
"""Longest side the photo is shrunk to before analysis: 10× the output is plenty, and fast.
(At 112, a one-pixel shift of the garment's box moved crops by 20 grey levels on average.)"""
DECODE_SIZE = WORK_SIZE
"""Longest side decode_image keeps at least: the work image is then still an area average of
decoded pixels (a 1/8-scale JPEG decode is exactly the mean of each 8×8 block). Measured:
predictions equal those of a full decode on photo-like phone photos (benchmarks/photo_accuracy.py)."""
TRIM_LEVEL = TRIM * 255
"""Garment/background threshold on 0–255 grey: Zalando's trim level (contract/isolate.py `TRIM`)."""
RESAMPLE = Image.Resampling.BOX
"""To 28 px: area averaging. Measured on 1,500 photo-like test images, box, bilinear, bicubic
and Lanczos agree within 0.3 points once sharpened; box is the plain 'subsampling' of the recipe."""
SHARPEN = 1.0
"""Unsharp-mask amount after resizing (Gaussian sigma 1), the recipe's step 4. Measured: +0.7 to
+1.5 points of photo-like accuracy over no sharpening, for every resampling filter."""

# First bytes of formats people send by mistake, to say what the file is instead of "unknown".
_SIGNATURES = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x00\x00\x01\x00", "an ICO icon"),
    (b"8BPS", "a Photoshop document"),
)


class ImageError(ValueError):
    """The bytes are not an acceptable image; the message says why (the caller names the file)."""


_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis")
"""ISO-BMFF major brands of HEIC/HEIF and AVIF stills and sequences."""
_VIDEO_BRANDS = (b"isom", b"iso2", b"mp41", b"mp42", b"qt  ", b"M4V ", b"3gp4", b"3gp5", b"avc1")


def _brand(data: bytes) -> bytes | None:
    return data[8:12] if data[4:8] == b"ftyp" else None


def _describe(data: bytes) -> str:
    head = data[:512].lstrip()
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if _brand(data) in _VIDEO_BRANDS:
        return "a video (MP4/MOV), not a photo"
    lowered = head.lower()
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "an SVG drawing"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in data[:256]):
        return "text"
    return "not an image in an accepted format"


def _draft_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """The smallest (width, height) of the photo's aspect whose longest side is `longest` (rounded up)."""
    side = max(size)
    return max(1, -(-size[0] * longest // side)), max(1, -(-size[1] * longest // side))


_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "CMYK")
"""Modes whose box average is the average of what they show (LA/RGBA: Pillow premultiplies)."""


def _reduced(image: Image.Image, factor: int) -> Image.Image:
    """Box-reduce by an integer factor, keeping what later steps read: format, EXIF orientation."""
    exif = image.getexif()  # read first: TIFF keeps its orientation in tags, not in info
    reduced = image.reduce(factor)
    reduced.info = dict(image.info)
    if exif:
        reduced.info["exif"] = exif.tobytes()
    reduced.format = image.format
    return reduced


def header_pixels(data: bytes) -> int:
    """Width × height as the image's header claims it, read without decoding a pixel; 0 when the
    header cannot be read (decode_image then refuses the file without decoding either)."""
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            return max(0, image.width) * max(0, image.height)
    except Exception:  # unreadable, a format we refuse, or over Pillow's own bomb limit
        return 0


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, longest_side: int | None = DECODE_SIZE
) -> Image.Image:
    """Decode image bytes (first frame of an animation or sequence); ImageError for anything else.

    The image comes back with its longest side at least `longest_side` (never enlarged), decoded
    at reduced scale where the format allows it; `longest_side=None` decodes every pixel.
    """
    if not data:
        raise ImageError("empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large ({exc})") from None
    except Exception:  # UnidentifiedImageError, or a plugin choking on a malformed header
        if _brand(data) in _HEIF_BRANDS:  # a HEIC/AVIF container that libheif/libavif cannot parse
            raise ImageError("truncated or corrupt HEIC/AVIF data (its header cannot be read)") from None
        raise ImageError(f"unsupported file type: {_describe(data)} (accepted: {ACCEPTED_NAMES})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}×{height})")
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"image is {width}×{height} pixels, too small to hold a garment (smallest accepted: {MIN_SIDE}×{MIN_SIDE})"
        )
    if width * height > max_pixels:
        raise ImageError(f"image is {width}×{height} = {width * height:,} pixels, over the limit {max_pixels:,}")
    fmt = image.format
    try:
        if longest_side and max(image.size) > longest_side:
            # JPEG: decode straight to 1/2, 1/4 or 1/8 scale in the IDCT; other formats: no-op.
            image.draft(None, _draft_size(image.size, longest_side))
        image.load()  # decode every pixel now: truncated or corrupt data fails here, not later
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large ({exc})") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError… on corrupt data
        reason = " ".join(str(exc).split())  # libheif's messages span lines
        raise ImageError(f"truncated or corrupt {fmt} data ({reason})") from None
    if longest_side and image.mode in _REDUCIBLE and max(image.size) >= 2 * longest_side:
        image = _reduced(image, max(image.size) // longest_side)
    return image


def load_image_file(
    path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS, longest_side: int | None = DECODE_SIZE
) -> Image.Image:
    """Read and decode an image file; ImageError if unreadable or not an accepted image."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, max_pixels, longest_side)


# ---------------------------------------------------------------------------
# Photo -> Fashion-MNIST crop


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not cost the user the prediction
        return image


def _flattened(image: Image.Image) -> Image.Image:
    """An "L", "RGB" or "F" image: alpha flattened on white, 16-bit scaled to 8-bit, the rest via RGB."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image.convert("I") if mode != "I" else image, dtype=np.float32)
        if mode != "I" or values.max() > 255:  # mode I holds 16-bit PNG/TIFF data in older files
            values = values / 257
        return Image.fromarray(values, "F")
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        return Image.fromarray(np.clip(values * 255 if values.max() <= 1 else values, 0, 255), "F")
    if "A" in mode or "a" in mode or mode == "P" or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), rgba)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, 1…: through RGB, like any viewer
    return image


def _grey(image: Image.Image) -> Image.Image:
    """Luminance 0..255 as an "L" or "F" image (ITU-R 601, as Pillow's convert("L"))."""
    image = _flattened(image)
    return image if image.mode in ("L", "F") else image.convert("L")


def _shrink(grey: Image.Image, longest: int) -> np.ndarray:
    """Area-average down to `longest` pixels on the long side (never up), as float32."""
    if max(grey.size) > longest:
        factor = max(grey.size) // longest
        if factor >= 2:  # integer box reduction first: a 12 MP photo costs milliseconds, not 100s
            grey = grey.reduce(factor)
        scale = longest / max(grey.size)
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.convert("F").resize(size, Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.float32)


def _work_images(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """The work image, longest side WORK_SIZE: RGB [H, W, 3] and its grey [H, W], float32 0..255."""
    flat = _flattened(image)
    if flat.mode != "RGB":
        grey = _shrink(flat, WORK_SIZE)
        return np.repeat(grey[..., None], 3, axis=2), grey
    # One area-averaging resize for all three channels, in 8 bits: a fourth of the cost of three
    # float ones, and rounding to whole levels is far below a photo's noise.
    if max(flat.size) > WORK_SIZE:
        if (factor := max(flat.size) // WORK_SIZE) >= 2:
            flat = flat.reduce(factor)
        scale = WORK_SIZE / max(flat.size)
        flat = flat.resize((max(1, round(flat.width * scale)), max(1, round(flat.height * scale))), RESAMPLE)
    rgb = np.asarray(flat, dtype=np.float32)
    return rgb, rgb @ _LUMA


def _corner_levels(grey: np.ndarray) -> np.ndarray:
    """Grey level of the four corner patches (tl, tr, bl, br).

    Corners are where a product photo is most surely background; a corner that
    disagrees with the others (the garment reaches it) is replaced by their median.
    """
    h, w = grey.shape
    ph, pw = max(1, round(h * 0.04)), max(1, round(w * 0.04))
    patches = (grey[:ph, :pw], grey[:ph, -pw:], grey[-ph:, :pw], grey[-ph:, -pw:])
    corners = np.array([p.item() if p.size == 1 else np.median(p) for p in patches], dtype=np.float32)
    low, high = np.sort(corners)[1:3]
    middle = (low + high) / 2  # the median of four; np.median costs more than the rest of the check
    return np.where(np.abs(corners - middle) > 2 * TRIM_LEVEL, middle, corners)


def _garment_box(garment: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (top, bottom, left, right) of what stands out from the background, or None."""
    h, w = garment.shape
    mask = garment > TRIM_LEVEL
    # A row or column belongs to the garment only if enough of it does: JPEG noise and
    # dust are single pixels, a garment edge is not.
    rows = np.flatnonzero(mask.sum(axis=1) >= max(1, round(w * 0.005)))
    cols = np.flatnonzero(mask.sum(axis=0) >= max(1, round(h * 0.005)))
    if len(rows) == 0 or len(cols) == 0:
        return None
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp mask with a Gaussian of sigma 1 (Fashion-MNIST's step 4)."""
    if amount <= 0:
        return image
    taps = np.exp(-0.5 * np.arange(-3, 4, dtype=np.float32) ** 2)
    taps /= taps.sum()
    padded = np.pad(image, 3)  # the canvas around a garment is black
    blurred = np.apply_along_axis(np.convolve, 0, padded, taps, mode="valid")
    blurred = np.apply_along_axis(np.convolve, 1, blurred, taps, mode="valid")
    return image + amount * (image - blurred)


def _looks_like_fashion_mnist(grey: np.ndarray) -> bool:
    # The mean of the corner levels is the mean of the background surface; computing
    # just that (not the surface) made the pass-through check 3x cheaper per request.
    return grey.shape == (SIZE, SIZE) and float(_corner_levels(grey).mean()) <= 127


def _as_stored(image: Image.Image) -> np.ndarray | None:
    """The pixels of an 8-bit grey, upright 28×28 image that already looks like Fashion-MNIST, else None.

    The common case of batched HTTP requests, checked on the decoded bytes: the general path
    below gives the same pixels through three float copies, at several times the cost."""
    if image.size != (SIZE, SIZE) or image.mode != "L" or "transparency" in image.info:
        return None
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            return None
    except Exception:  # a broken EXIF block: the general path decides
        return None
    pixels = np.array(image)
    return pixels if _looks_like_fashion_mnist(pixels) else None


def to_fashion_mnist(image: Image.Image) -> np.ndarray:
    """Any decoded image -> uint8 [28, 28], white garment on black, as Fashion-MNIST stores it."""
    if (pixels := _as_stored(image)) is not None:
        return pixels  # already model input: touch nothing
    image = _upright(image)
    if image.size == (SIZE, SIZE):  # the only size whose work image can be a stored crop
        grey = _shrink(_grey(image), WORK_SIZE)
        if _looks_like_fashion_mnist(grey):
            return np.rint(grey).astype(np.uint8)  # already model input: touch nothing
    garment = garment_darkness(*_work_images(image))
    box = _garment_box(garment)
    if box is None:
        return np.zeros((SIZE, SIZE), dtype=np.uint8)  # nothing stands out: a blank frame
    top, bottom, left, right = box
    crop = garment[top:bottom, left:right]
    h, w = crop.shape
    scale = SIZE / max(h, w)
    size = (min(SIZE, max(1, round(w * scale))), min(SIZE, max(1, round(h * scale))))
    small = np.asarray(Image.fromarray(np.ascontiguousarray(crop), "F").resize(size, RESAMPLE))
    small = _sharpen(small, SHARPEN)
    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    # Bounding-box centring; an odd margin puts the extra pixel above/left, as Fashion-MNIST does.
    y0, x0 = (SIZE - size[1] + 1) // 2, (SIZE - size[0] + 1) // 2
    canvas[y0 : y0 + size[1], x0 : x0 + size[0]] = small
    return np.rint(np.clip(canvas, 0, 255)).astype(np.uint8)


def to_model_input(crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """uint8 [28, 28] crops (a list, or an array [N, 28, 28] such as the dataset's images)
    -> float32 [N, 1, 28, 28] in [0, 1], the model's input. The one place pixels become input."""
    if len(crops) == 0:
        return np.zeros((0, 1, SIZE, SIZE), dtype=np.float32)
    batch = crops if isinstance(crops, np.ndarray) else np.stack([np.asarray(c) for c in crops])
    if batch.shape[1:] != (SIZE, SIZE):
        raise ValueError(f"crops must be {SIZE}×{SIZE}, got {list(batch.shape[1:])}")
    return (batch.astype(np.float32) / 255)[:, None]
