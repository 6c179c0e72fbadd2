"""Deciding about models in the registry: publish, promote (contract check + canary), roll back.

One implementation for both ways in, `wardrobe models ...` (the store directly)
and /admin/models (service/admin.py). The registry (contract/store/registry.py)
stores the decision; every serving worker then follows the new champion
(service/registry_follower.py).
"""

from __future__ import annotations

import getpass
import hashlib
import socket
from collections.abc import Callable

from contract.runtime import Classifier, ModelError, load_model_bytes
from contract.store import Store
from contract.store.registry import ModelRecord, Registry, RegistryError
from service.canary import Canary, held_out_items, run_canary

MAX_MODEL_BYTES = 64 * 1024 * 1024
"""Largest model file the registry takes (the shipped CNN is about 1 MiB)."""


class PromotionRefused(Exception):
    """A model was not taken; `status` is the HTTP answer, the message says why."""

    def __init__(self, status: int, message: str, canary: Canary | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.canary = canary


def command_line_user() -> str:
    """Who a `wardrobe models` command acts for, as the registry records it."""
    return f"{getpass.getuser()}@{socket.gethostname()} (wardrobe models)"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_model(data: bytes, name: str = "the uploaded model") -> Classifier:
    """The contract check (contract/runtime.py: opens, checks and runs a test batch) on CPU, one thread."""
    if len(data) > MAX_MODEL_BYTES:
        raise PromotionRefused(413, f"{name} is {len(data):,} bytes, over the limit of {MAX_MODEL_BYTES:,}")
    try:
        return load_model_bytes(data, name, device="cpu", threads=1)
    except ModelError as exc:
        raise PromotionRefused(422, f"{name} breaks the model contract: {exc}") from None


def publish(registry: Registry, data: bytes, by: str, shipped: bool = False) -> tuple[ModelRecord, bool]:
    """Check `data` against the model contract and register it as a candidate; (record, True if new)."""
    classifier = check_model(data)
    return registry.publish(classifier.info.sha256, data, classifier.info.metadata, by, shipped=shipped)


def promote(
    registry: Registry, sha: str, by: str, loaded: Callable[[str], Classifier | None] = lambda sha: None
) -> tuple[ModelRecord, Canary]:
    """Make `sha` (or a unique prefix) the champion if it passes the contract check and the canary against
    the champion on the wardrobe's held-out items; else mark it refused and raise PromotionRefused.
    `loaded(sha)` may hand over a model already open in this process (a serving worker's champion)."""
    sha = registry.resolve(sha)
    champion_sha = registry.champion_sha256()
    if champion_sha == sha:
        raise RegistryError(f"model {sha[:12]} is the champion already")
    candidate = check_model(registry.onnx_bytes(sha), f"model {sha[:12]}")
    if champion_sha is None:
        canary = run_canary(candidate, candidate, None)
    else:
        champion = loaded(champion_sha) or check_model(registry.onnx_bytes(champion_sha), f"model {champion_sha[:12]}")
        canary = run_canary(champion, candidate, held_out_items(Store(registry.engine), candidate))
    if not canary.passed:
        registry.refuse(sha, canary.as_dict(), canary.note, by)
        raise PromotionRefused(409, f"model {sha[:12]} refused by the canary: {canary.note}", canary)
    return registry.promote(sha, canary.as_dict(), by, expected_champion=champion_sha), canary


def rollback(registry: Registry, by: str) -> tuple[ModelRecord, ModelRecord]:
    """The previous champion comes back (no canary: a person asked for it, and it served before)."""
    return registry.rollback(by)
