"""Reading and writing wardrobe items: the one implementation the service and training share.

Every call is one transaction: an upload of many photos is stored whole or not
at all, and what a call stored is committed before it returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from contract.store import database
from contract.store.database import as_utc
from contract.store.schema import items

UNSURE = "unsure"
"""The shelf of items the model was unsure about and the person has not labelled yet."""
INPUT_SHAPE = (28, 28)
MAX_PAGE = 1000
"""Most items one listing call answers."""

# The shelf of a row, as SQL: the person's label wins, then "unsure", then the model's label.
shelf_of_row = sa.case(
    (items.c.corrected_label.is_not(None), items.c.corrected_label),
    (items.c.unsure, sa.literal(UNSURE)),
    else_=items.c.predicted_label,
)
_SUMMARY = [c for c in items.c if c.name not in ("thumbnail", "model_input")]


class ItemNotFound(LookupError):
    """No item with this id (never stored, or deleted)."""

    def __init__(self, item_id: int):
        super().__init__(f"no wardrobe item with id {item_id}")
        self.item_id = item_id


@dataclass(frozen=True)
class NewItem:
    """What the service knows about one uploaded photo, before it has an id."""

    filename: str
    thumbnail: bytes
    thumbnail_type: str
    model_input: np.ndarray  # uint8 [28, 28], exactly what the model saw
    predicted_label: str
    confidence: float
    top_k: list[dict]
    unsure: bool
    model_sha256: str


@dataclass(frozen=True)
class Item:
    """A stored item without its image bytes."""

    id: int
    added_at: datetime
    filename: str
    predicted_label: str
    confidence: float
    top_k: list[dict]
    unsure: bool
    model_sha256: str
    corrected_label: str | None
    corrected_at: datetime | None

    @property
    def label(self) -> str:
        """The label that counts: the person's if they gave one, else the model's."""
        return self.corrected_label if self.corrected_label is not None else self.predicted_label

    @property
    def label_source(self) -> str:
        return "person" if self.corrected_label is not None else "model"

    @property
    def shelf(self) -> str:
        if self.corrected_label is not None:
            return self.corrected_label
        return UNSURE if self.unsure else self.predicted_label


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_before: int | None
    """Pass as `before` for the next page; None when this was the last."""


@dataclass(frozen=True)
class LabelledImage:
    """One item as training reads it: the exact model input and the label that counts."""

    item: Item
    image: np.ndarray  # uint8 [28, 28]


def _item(row: sa.Row) -> Item:
    return Item(
        id=row.id, added_at=as_utc(row.added_at), filename=row.filename, predicted_label=row.predicted_label,
        confidence=row.confidence, top_k=row.top_k, unsure=row.unsure, model_sha256=row.model_sha256,
        corrected_label=row.corrected_label, corrected_at=as_utc(row.corrected_at),
    )  # fmt: skip


def _input_bytes(image: np.ndarray) -> bytes:
    image = np.asarray(image)
    if image.shape != INPUT_SHAPE or image.dtype != np.uint8:
        raise ValueError(f"model_input must be uint8 {list(INPUT_SHAPE)}, got {image.dtype} {list(image.shape)}")
    return np.ascontiguousarray(image).tobytes()


def _input_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).reshape(INPUT_SHAPE).copy()


class Store:
    """The wardrobe in a database (see contract/store/database.py for where and how)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._writer = database.writer(engine)

    @classmethod
    def open(cls, setting: str | URL | None = None, create: bool = True) -> Store:
        """Open WARDROBE_DB's database (a path or URL; None/empty: the default file).

        create=True makes or migrates the schema (the service); create=False only reads an
        existing wardrobe and raises StoreError if there is none (training).
        """
        url = setting if isinstance(setting, URL) else database.database_url(setting)
        return cls(database.open_engine(url, create=create))

    @property
    def url(self) -> str:
        return database.describe(self.engine.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def add(self, new: Sequence[NewItem], now: datetime | None = None) -> list[Item]:
        """Store all of `new` in one transaction (all or none); return them with their ids."""
        if not new:
            return []
        now = now or datetime.now(UTC)
        rows = [
            {
                "added_at": now,
                "filename": n.filename,
                "thumbnail": n.thumbnail,
                "thumbnail_type": n.thumbnail_type,
                "model_input": _input_bytes(n.model_input),
                "predicted_label": n.predicted_label,
                "confidence": float(n.confidence),
                "top_k": n.top_k,
                "unsure": bool(n.unsure),
                "model_sha256": n.model_sha256,
            }  # fmt: skip
            for n in new
        ]
        with self._writer.begin() as connection:
            ids = connection.execute(
                sa.insert(items).returning(items.c.id, sort_by_parameter_order=True), rows
            ).scalars().all()  # fmt: skip
        return [
            Item(id=i, added_at=now, filename=n.filename, predicted_label=n.predicted_label,
                 confidence=float(n.confidence), top_k=n.top_k, unsure=bool(n.unsure),
                 model_sha256=n.model_sha256, corrected_label=None, corrected_at=None)
            for i, n in zip(ids, new, strict=True)
        ]  # fmt: skip

    def get(self, item_id: int) -> Item:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(*_SUMMARY).where(items.c.id == item_id)).first()
        if row is None:
            raise ItemNotFound(item_id)
        return _item(row)

    def thumbnail(self, item_id: int) -> tuple[bytes, str]:
        """(image bytes, media type) of the item's thumbnail."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(items.c.thumbnail, items.c.thumbnail_type).where(items.c.id == item_id)
            ).first()
        if row is None:
            raise ItemNotFound(item_id)
        return row.thumbnail, row.thumbnail_type

    def thumbnails(self, item_ids: Sequence[int]) -> dict[int, tuple[bytes, str]]:
        """{id: (image bytes, media type)} for those of `item_ids` that exist, in one query."""
        if not item_ids:
            return {}
        query = sa.select(items.c.id, items.c.thumbnail, items.c.thumbnail_type).where(items.c.id.in_(item_ids))
        with self.engine.connect() as connection:
            return {row.id: (row.thumbnail, row.thumbnail_type) for row in connection.execute(query)}

    def model_input(self, item_id: int) -> np.ndarray:
        """The exact 28×28 uint8 crop the model classified."""
        with self.engine.connect() as connection:
            data = connection.execute(sa.select(items.c.model_input).where(items.c.id == item_id)).scalar()
        if data is None:
            raise ItemNotFound(item_id)
        return _input_array(data)

    def page(
        self,
        shelf: str | None = None,
        corrected: bool | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> Page:
        """Items newest first, optionally on one shelf (a label or UNSURE) and/or only (un)corrected."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        query = sa.select(*_SUMMARY).order_by(items.c.id.desc()).limit(limit + 1)
        if shelf is not None:
            query = query.where(shelf_of_row == shelf)
        if corrected is not None:
            label = items.c.corrected_label
            query = query.where(label.is_not(None) if corrected else label.is_(None))
        if before is not None:
            query = query.where(items.c.id < before)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        page = [_item(r) for r in rows[:limit]]
        return Page(items=page, next_before=page[-1].id if len(rows) > limit else None)

    def counts(self) -> dict[str, int]:
        """Items per shelf (only shelves that hold any)."""
        with self.engine.connect() as connection:
            query = sa.select(shelf_of_row.label("shelf"), sa.func.count()).group_by(shelf_of_row)
            rows = connection.execute(query).all()
        return {shelf: count for shelf, count in rows}

    def corrected_count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count()).where(items.c.corrected_label.is_not(None))
            ).scalar_one()  # fmt: skip

    def correct(self, item_id: int, label: str | None, now: datetime | None = None) -> Item:
        """Set the person's label (None: forget it, the model's label counts again)."""
        when = (now or datetime.now(UTC)) if label is not None else None
        with self._writer.begin() as connection:
            done = connection.execute(
                sa.update(items).where(items.c.id == item_id).values(corrected_label=label, corrected_at=when)
            )
            if done.rowcount == 0:
                raise ItemNotFound(item_id)
            row = connection.execute(sa.select(*_SUMMARY).where(items.c.id == item_id)).one()
        return _item(row)

    def delete(self, item_id: int) -> None:
        with self._writer.begin() as connection:
            if connection.execute(sa.delete(items).where(items.c.id == item_id)).rowcount == 0:
                raise ItemNotFound(item_id)

    def labelled_images(self, batch: int = 500) -> Iterator[LabelledImage]:
        """Every item with its model input, oldest first, read in batches (for export and training)."""
        query = sa.select(*_SUMMARY, items.c.model_input).order_by(items.c.id)
        with self.engine.connect() as connection:
            result = connection.execution_options(yield_per=batch).execute(query)
            for row in result:
                yield LabelledImage(item=_item(row), image=_input_array(row.model_input))
