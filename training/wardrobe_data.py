"""A person's wardrobe as training data: read it, freeze it, and split it.

A source is a wardrobe export zip (`GET /wardrobe/export`), an image folder (one
sub-folder per class, as `training.data.ImageFolderDataset` reads), or a
database URL (the wardrobe store). Whatever the source, a run trains from a
frozen export zip copied into its run directory; the zip's SHA-256 and item
count are what the run's config and the exported model record.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from contract import store
from contract.files import atomic_write, sha256_file
from training.fashion_mnist import CLASSES

PERSON = "person"
MODEL = "model"


class WardrobeError(ValueError):
    """A wardrobe source is missing, malformed or too small; the message names it."""


@dataclass(frozen=True)
class WardrobeItems:
    """Labelled wardrobe items, in a stable order (by id)."""

    ids: tuple[int, ...]
    images: np.ndarray
    """uint8 [N, 28, 28], the exact model input (white garment on black)."""
    labels: np.ndarray
    """int64 [N]: the person's label where they gave one, else the model's."""
    label_source: tuple[str, ...]
    """"person" (corrected or confirmed) or "model" (nobody looked) per item."""
    predicted: np.ndarray
    """int64 [N]: the label the deciding model gave (-1: not known, e.g. an image folder)."""

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> WardrobeItems:
        index = np.asarray(index, dtype=np.int64)
        return WardrobeItems(
            ids=tuple(self.ids[i] for i in index),
            images=self.images[index],
            labels=self.labels[index],
            label_source=tuple(self.label_source[i] for i in index),
            predicted=self.predicted[index],
        )

    def person_labelled(self) -> WardrobeItems:
        """Only the items whose label a person gave (or confirmed)."""
        return self.subset(np.array([i for i, s in enumerate(self.label_source) if s == PERSON], dtype=np.int64))


@dataclass(frozen=True)
class Snapshot:
    """A wardrobe frozen for one run: the zip it was copied to and that zip's checksum."""

    items: WardrobeItems
    path: Path
    sha256: str
    source: str
    names: dict[int, str]
    """Where an item came from, when the export does not say (an image folder's file paths)."""


# ---------------------------------------------------------------------------
# Reading a source (the export zip's format and the database are the store's: contract/store)

_FIXED_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""Time stamp of items that have none (an image folder's), so their export is byte-for-byte stable."""


def read_export(path: Path) -> WardrobeItems:
    """Read an export zip (contract/store's reader); a WardrobeError names the zip and the entry."""
    path = Path(path)
    if not path.is_file():
        raise WardrobeError(f"{path}: wardrobe export not found")
    try:
        export = store.read_export(path)
    except store.ExportError as exc:
        raise WardrobeError(str(exc)) from None
    if tuple(export.classes) != tuple(CLASSES):
        raise WardrobeError(f"{path}: the export's classes {list(export.classes)} are not {list(CLASSES)}")
    records = [
        (e.id, e.image, CLASSES.index(e.label), e.label_source,
         CLASSES.index(e.predicted_label) if e.predicted_label in CLASSES else -1)
        for e in export.items
    ]  # fmt: skip
    return _items(records, str(path))


def _items(records: list[tuple], where: str) -> WardrobeItems:
    records.sort(key=lambda r: r[0])
    ids = [r[0] for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise WardrobeError(f"{where}: item id {dup!r} appears twice")
    return WardrobeItems(
        ids=tuple(ids),
        images=np.stack([r[1] for r in records]) if records else np.zeros((0, 28, 28), np.uint8),
        labels=np.array([r[2] for r in records], dtype=np.int64),
        label_source=tuple(r[3] for r in records),
        predicted=np.array([r[4] for r in records], dtype=np.int64),
    )


def as_records(items: WardrobeItems, filenames: Sequence[str] | None = None) -> list[store.LabelledImage]:
    """Items as the store's records (for writing an export): a person label is a correction."""
    records = []
    for i, item_id in enumerate(items.ids):
        label = CLASSES[items.labels[i]]
        person = items.label_source[i] == PERSON
        predicted = CLASSES[items.predicted[i]] if items.predicted[i] >= 0 else label
        item = store.Item(
            id=int(item_id), added_at=_FIXED_TIME, filename=filenames[i] if filenames else str(item_id),
            predicted_label=predicted if person else label, confidence=0.0, top_k=[], unsure=False,
            model_sha256="", corrected_label=label if person else None, corrected_at=_FIXED_TIME if person else None,
        )  # fmt: skip
        records.append(store.LabelledImage(item=item, image=items.images[i]))
    return records


def write_export(records: Iterable[store.LabelledImage], path: Path) -> int:
    """Write an export zip atomically (the store's writer); return how many items it holds."""
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "wb") as f:
            count = store.write_export(records, CLASSES, f)

    atomic_write(Path(path), write)
    return count


def folder_records(root: Path) -> list[store.LabelledImage]:
    """An image folder (one sub-folder per class), every photo labelled by the person who sorted
    it, numbered 1, 2, … in path order (the path is kept as the item's filename)."""
    from training.data import ImageFolderDataset

    root = Path(root)
    try:
        dataset = ImageFolderDataset(root)
    except (ValueError, FileNotFoundError) as exc:
        raise WardrobeError(str(exc)) from None
    n = len(dataset.labels)
    items = WardrobeItems(
        ids=tuple(range(1, n + 1)),
        images=dataset.images,
        labels=dataset.labels,
        label_source=(PERSON,) * n,
        predicted=np.full(n, -1, dtype=np.int64),
    )
    return as_records(items, [p.relative_to(root).as_posix() for p in dataset.paths])


def is_database_url(source: str) -> bool:
    return "://" in source


def freeze(source: str, dest: Path) -> Snapshot:
    """Copy (an export zip) or export (a folder, a database) the wardrobe to `dest`, read it back
    from there, and checksum it: the run trains on exactly the bytes it records."""
    dest = Path(dest)
    path = Path(source)
    names: dict[int, str] = {}
    if is_database_url(source):
        try:
            with store.Store.open(source, create=False) as db:
                write_export(db.labelled_images(), dest)
        except (store.StoreError, ValueError) as exc:
            raise WardrobeError(f"data.wardrobe: {exc}") from None
    elif path.is_dir():
        records = folder_records(path)
        names = {r.item.id: r.item.filename for r in records}
        write_export(records, dest)
    elif path.is_file():
        read_export(path)  # a clear error before anything is copied
        atomic_write(dest, lambda tmp: shutil.copyfile(path, tmp))
    else:
        raise WardrobeError(
            f"data.wardrobe {source!r}: no such export zip or image folder (a database URL looks like sqlite:///path)"
        )
    return Snapshot(items=read_export(dest), path=dest, sha256=sha256_file(dest), source=source, names=names)


def read_source(source: str) -> tuple[WardrobeItems, str]:
    """The items of any source and the SHA-256 of its export (frozen into a temporary file)."""
    with tempfile.TemporaryDirectory(prefix="wardrobe-") as tmp:
        snapshot = freeze(source, Path(tmp) / "export.zip")
    return snapshot.items, snapshot.sha256


def held_out_items(source: str, metadata: Mapping[str, str]) -> tuple[WardrobeItems, str]:
    """The items of `source` a model never trained on (contract/store's held-out selection, the one the
    canary uses), and a sentence saying which they are."""
    items, sha = read_source(source)
    try:
        held = store.held_out_for(as_records(items), metadata, sha)
    except store.HeldOutError as exc:
        raise WardrobeError(f"{source}: {exc}") from None
    index = {item_id: i for i, item_id in enumerate(items.ids)}
    return items.subset(np.array([index[i] for i in held.ids], dtype=np.int64)), held.which


# ---------------------------------------------------------------------------
# The person's own train / held-out split


def _rank_key(seed: int, item_id: int) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def split_held_out(
    ids: tuple[int, ...], labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split into (own-train indices, held-out indices).

    Within each class the items are ordered by a seeded hash of their id and the first
    `round(fraction · n)` (at least one when the class has two or more) are held out. An
    item's place depends on its id, not on the order items arrive in, so the held-out set
    of a growing wardrobe mostly stays the same from one run to the next.
    """
    labels = np.asarray(labels)
    held: list[int] = []
    for c in np.unique(labels):
        members = sorted(np.nonzero(labels == c)[0], key=lambda i: _rank_key(seed, ids[i]))
        n_held = max(1, round(fraction * len(members))) if len(members) >= 2 else 0
        held += members[:n_held]
    held_idx = np.array(sorted(held), dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), held_idx)
    return train_idx, held_idx


def check_enough(labels: np.ndarray, min_per_class: int, min_items: int, where: str) -> None:
    """Raise a WardrobeError naming each class that has too few labelled items, and how many more are needed."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASSES))
    short = [(CLASSES[c], int(counts[c])) for c in range(len(CLASSES)) if counts[c] < min_per_class]
    if not short and len(labels) >= min_items:
        return
    parts = [f"{where}: too few labelled items to fine-tune ({len(labels)} labelled by a person"]
    if short:
        missing = sum(min_per_class - n for _, n in short)
        listed = ", ".join(f"{name} ({n})" for name, n in short)
        parts.append(
            f"; every class needs at least {min_per_class} (one to train on, one to hold out) — "
            f"short: {listed}; add at least {missing} more"
        )
    if len(labels) < min_items:
        parts.append(f"; at least {min_items} in all are needed, {min_items - len(labels)} more")
    raise WardrobeError(
        "".join(parts) + "). Correct or confirm more garments on the wardrobe page, "
        "or lower finetune.min_per_class / finetune.min_items."
    )
