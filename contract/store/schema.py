"""The wardrobe's tables, as SQLAlchemy Core metadata: what queries are written against.

Alembic's migrations (contract/store/migrations/) build and evolve the real
schema; a test checks that a freshly migrated database matches this metadata.
Labels are class names (the model's metadata decides which exist); the item's
shelf is derived: the person's label if any, else "unsure" when the model was
unsure, else the model's label. Timestamps are UTC.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("filename", Text, nullable=False),
    Column("thumbnail", LargeBinary, nullable=False),
    Column("thumbnail_type", String(32), nullable=False),
    Column("model_input", LargeBinary, nullable=False),  # 784 bytes: the 28×28 uint8 crop, row-major
    Column("predicted_label", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("top_k", JSON, nullable=False),
    Column("unsure", Boolean, nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("corrected_label", String(64), nullable=True),
    Column("corrected_at", DateTime(timezone=True), nullable=True),
    # SQLite would otherwise reuse the id of a deleted last row; ids name export files.
    sqlite_autoincrement=True,
)
