"""The wardrobe store: schema, migrations and access, shared by the service (writes) and
training (reads), and the export zip format both sides use. See docs/wardrobe.md."""

from contract.store.database import StoreError, database_url, default_database_path
from contract.store.export import FORMAT, ExportedItem, ExportError, WardrobeExport, read_export, write_export
from contract.store.held_out import HeldOut, HeldOutError, held_out_for
from contract.store.items import UNSURE, Item, ItemNotFound, LabelledImage, NewItem, Page, Store

__all__ = [
    "FORMAT", "UNSURE", "ExportError", "ExportedItem", "HeldOut", "HeldOutError", "Item", "ItemNotFound",
    "LabelledImage", "NewItem", "Page", "Store", "StoreError", "WardrobeExport", "database_url",
    "default_database_path", "held_out_for", "read_export", "write_export",
]  # fmt: skip
