"""The wardrobe export: one zip that the service writes and training reads (docs/wardrobe.md).

    manifest.json           {"format": "wardrobe-export/1", "classes": [...], "items": [...]}
    <class folder>/<id>.png  the exact 28×28 model input, 8-bit grey PNG

The class folder is the class name with "/" replaced by "_" ("T-shirt_top"), so the
zip also unpacks as an image folder that training.data.ImageFolderDataset reads. The
folder (and each item's "label") is the person's label when they gave one, else the
model's ("label_source" says which). Each manifest item holds: id, file, label,
label_source ("person" | "model"), predicted_label, confidence, model_sha256,
added_at and corrected_at (ISO 8601 UTC; corrected_at null when not corrected).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from contract.store.items import INPUT_SHAPE, LabelledImage

FORMAT = "wardrobe-export/1"
MANIFEST = "manifest.json"
ITEM_KEYS = ("id", "file", "label", "label_source", "predicted_label", "confidence",
             "model_sha256", "added_at", "corrected_at")  # fmt: skip


class ExportError(ValueError):
    """A file is not a readable wardrobe export; the message names the file and the entry."""


@dataclass(frozen=True)
class ExportedItem:
    """One manifest entry with its image."""

    id: int
    file: str
    label: str
    label_source: str
    predicted_label: str
    confidence: float
    model_sha256: str
    added_at: datetime
    corrected_at: datetime | None
    image: np.ndarray  # uint8 [28, 28]


@dataclass(frozen=True)
class WardrobeExport:
    classes: tuple[str, ...]
    items: list[ExportedItem]


def class_folder(label: str) -> str:
    """A class name as a folder name: '/' cannot be in one ("T-shirt/top" -> "T-shirt_top")."""
    return label.replace("/", "_")


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 [28, 28] model input as an 8-bit greyscale PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def write_export(records: Iterable[LabelledImage], classes: Sequence[str], out: IO[bytes]) -> int:
    """Write the zip to `out` (a binary file object); return how many items it holds."""
    entries = []
    with zipfile.ZipFile(out, "w") as archive:
        for record in records:
            item = record.item
            name = f"{class_folder(item.label)}/{item.id}.png"
            info = zipfile.ZipInfo(name, date_time=item.added_at.timetuple()[:6])
            archive.writestr(info, png_bytes(record.image), compress_type=zipfile.ZIP_STORED)  # PNG is compressed
            entries.append({
                "id": item.id, "file": name, "label": item.label, "label_source": item.label_source,
                "predicted_label": item.predicted_label, "confidence": item.confidence,
                "model_sha256": item.model_sha256, "added_at": _iso(item.added_at),
                "corrected_at": _iso(item.corrected_at),
            })  # fmt: skip
        manifest = {"format": FORMAT, "items": entries, "classes": list(classes)}
        # A fixed time stamp, not "now": the same wardrobe exports to the same bytes, so the SHA-256
        # a fine-tuning run records names the wardrobe, not the moment it was exported.
        manifest_info = zipfile.ZipInfo(MANIFEST, date_time=(1980, 1, 1, 0, 0, 0))
        archive.writestr(manifest_info, json.dumps(manifest, indent=1), compress_type=zipfile.ZIP_DEFLATED)
    return len(entries)


def _fail(source: str, message: str) -> ExportError:
    return ExportError(f"{source}: {message}")


def _read_image(archive: zipfile.ZipFile, source: str, name: str) -> np.ndarray:
    try:
        data = archive.read(name)
    except KeyError:
        raise _fail(source, f"manifest lists {name!r} but the zip has no such file") from None
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            if image.mode != "L" or image.size != INPUT_SHAPE[::-1]:
                raise _fail(source, f"{name}: expected an 8-bit grey 28×28 PNG, got {image.mode} {image.size}")
            return np.asarray(image, dtype=np.uint8).copy()
    except ExportError:
        raise
    except Exception as exc:
        raise _fail(source, f"{name}: not a readable PNG ({exc})") from None


def _item(archive: zipfile.ZipFile, source: str, index: int, entry: object, classes: tuple[str, ...]) -> ExportedItem:
    where = f"manifest item {index}"
    if not isinstance(entry, dict) or (missing := [k for k in ITEM_KEYS if k not in entry]):
        raise _fail(source, f"{where} lacks {missing if isinstance(entry, dict) else list(ITEM_KEYS)}")
    if entry["label"] not in classes:
        raise _fail(source, f"{where} (id {entry['id']}) has label {entry['label']!r}, not one of {list(classes)}")
    if entry["label_source"] not in ("person", "model"):
        raise _fail(source, f"{where} has label_source {entry['label_source']!r}; expected 'person' or 'model'")
    try:
        added = datetime.fromisoformat(entry["added_at"])
        corrected = datetime.fromisoformat(entry["corrected_at"]) if entry["corrected_at"] else None
        return ExportedItem(
            id=int(entry["id"]), file=str(entry["file"]), label=entry["label"], label_source=entry["label_source"],
            predicted_label=str(entry["predicted_label"]), confidence=float(entry["confidence"]),
            model_sha256=str(entry["model_sha256"]), added_at=added, corrected_at=corrected,
            image=_read_image(archive, source, str(entry["file"])),
        )  # fmt: skip
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ExportError):
            raise
        raise _fail(source, f"{where}: {exc}") from None


def read_export(source: Path | str | IO[bytes]) -> WardrobeExport:
    """Read and check a wardrobe export zip; ExportError naming the file and entry if it is not one."""
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "export")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _fail(name, f"not a readable zip file ({exc})") from None
    with archive:
        try:
            manifest = json.loads(archive.read(MANIFEST))
        except KeyError:
            raise _fail(name, f"no {MANIFEST} in the zip; is this a wardrobe export?") from None
        except ValueError as exc:
            raise _fail(name, f"{MANIFEST} is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise _fail(name, f"{MANIFEST} format is {got!r}; this code reads {FORMAT!r}")
        classes = manifest.get("classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise _fail(name, f"{MANIFEST} 'classes' must be a list of class names")
        entries = manifest.get("items")
        if not isinstance(entries, list):
            raise _fail(name, f"{MANIFEST} 'items' must be a list")
        classes = tuple(classes)
        read = [_item(archive, name, i, entry, classes) for i, entry in enumerate(entries)]
        return WardrobeExport(classes=classes, items=read)
