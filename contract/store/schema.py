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

# The model registry (contract/store/registry.py): every model a wardrobe has served or been offered.
models = Table(
    "models",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("onnx", LargeBinary, nullable=False),  # the model file itself: replicas share no filesystem
    Column("size", Integer, nullable=False),
    Column("model_metadata", JSON, nullable=False),  # the file's metadata_props
    Column("origin", String(16), nullable=False),  # shipped | fine-tune | upload
    Column("wardrobe_sha256", String(64), nullable=True),  # fine-tune: the export it learned from
    Column("wardrobe_items", Integer, nullable=True),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("published_by", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # candidate | champion | previous | refused
    Column("canary", JSON, nullable=True),  # the last canary's figures
    Column("decided_by", String(128), nullable=True),  # who promoted, refused or rolled back
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("promoted_at", DateTime(timezone=True), nullable=True),  # when it last became champion
    Column("demoted_at", DateTime(timezone=True), nullable=True),  # when it last stopped being champion
    Column("note", Text, nullable=True),  # why it was refused or rolled back
)

# One row per serving worker: the model it serves, so a promotion can count who follows.
model_workers = Table(
    "model_workers",
    metadata,
    Column("worker", String(160), primary_key=True),  # host:pid
    Column("replica", String(160), nullable=False),  # host:pid of the server process the worker belongs to
    Column("model_sha256", String(64), nullable=False),
    Column("confirmed_at", DateTime(timezone=True), nullable=False),
)
