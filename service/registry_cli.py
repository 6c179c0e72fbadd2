"""`wardrobe models publish FILE | list | promote SHA256 | rollback`: the model registry from a shell.

Talks to the wardrobe's database directly (WARDROBE_DB, as the service does), so it
works with no server running; serving workers follow the change within a second
(service/registry_follower.py). The decisions are service/promotion.py's, the same
as /admin/models.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from contract.store.database import database_url
from contract.store.registry import ModelRecord, Registry
from service import promotion
from service.promotion import PromotionRefused


def _line(record: ModelRecord) -> str:
    when = record.promoted_at or record.published_at
    accuracy = record.as_json()["test_accuracy"]
    held = (record.canary or {}).get("candidate_accuracy")
    parts = [
        record.sha256[:12], f"{record.state:<9}", f"{record.origin:<9}", when.strftime("%Y-%m-%d %H:%M"),
        f"test {accuracy:.4f}" if accuracy is not None else "test    -  ",
        f"held-out {held:.4f}" if held is not None else "",
    ]  # fmt: skip
    return "  ".join(parts).rstrip()


def publish_file(registry: Registry, path: Path, hint: bool = True) -> ModelRecord:
    """Publish a model file as a candidate and say so; its SHA-256 is what `promote` takes
    (`hint`: also print the promote command, unless the caller prints its own next steps)."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such model file")
    try:
        record, new = promotion.publish(registry, Path(path).read_bytes(), promotion.command_line_user())
    except PromotionRefused as exc:
        raise ValueError(f"{path}: {exc.message}") from None
    print(f"{'published' if new else 'already in the registry'}: {record.sha256} ({record.state}, {record.origin})"
          f" in {where()}")  # fmt: skip
    if hint and record.state == "candidate":
        print(f"promote it with: wardrobe models promote {record.sha256[:12]}")
    return record


def open_registry() -> Registry:
    """The registry in WARDROBE_DB, the database the service uses (empty: the default SQLite file)."""
    return Registry.open(os.environ.get("WARDROBE_DB", ""))


def where() -> str:
    """Which database these commands use, password hidden: a shell without the server's WARDROBE_DB
    would otherwise change another registry without a word."""
    url = database_url(os.environ.get("WARDROBE_DB")).render_as_string(hide_password=True)
    return url if os.environ.get("WARDROBE_DB", "").strip() else f"{url} (the default: WARDROBE_DB is not set)"


def run(action: str, target: str | None, as_json: bool = False, force: str | None = None) -> int:
    """One `wardrobe models` sub-command against WARDROBE_DB; 0, or 1 when a promotion is refused.
    `force` (promote): the operator's reason to override the canary and the guard (service/promotion.py)."""
    with open_registry() as registry:
        by = promotion.command_line_user()
        if action == "publish":
            publish_file(registry, Path(target))
        elif action == "list":
            records = registry.records()
            if as_json:
                print(json.dumps([r.as_json() for r in records], indent=1))
            else:
                print(f"registry: {where()}")
                for record in records:
                    print(_line(record))
                if not records:
                    print("the registry is empty: `wardrobe serve` registers the model it starts with")
        elif action == "promote":
            try:
                record, canary = promotion.promote(registry, target, by, force=force)
            except PromotionRefused as exc:
                print(f"wardrobe models promote: {exc.message}", file=sys.stderr)
                return 1
            print(f"champion: {record.sha256} in {where()}\ncanary: {canary.note}")
            if forced := (record.canary or {}).get("forced"):
                print(f"forced by {forced['by']}: {forced['reason']}\noverriding: {'; '.join(forced['overrode'])}")
        elif action == "rollback":
            back, old = promotion.rollback(registry, by)
            print(f"champion: {back.sha256} in {where()} (rolled back from {old.sha256[:12]}, now a candidate)")
    return 0
