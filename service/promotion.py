"""Deciding about models in the registry: publish, promote (contract check + canary + guard), roll back.

The guard keeps a champion from being replaced by a model that is plainly worse, or judged on
too little: a candidate whose recorded Fashion-MNIST test accuracy (its metadata) is more than
MAX_TEST_ACCURACY_DROP below the champion's, or whose canary ran on fewer than canary.MIN_ITEMS
held-out items, is refused unless the operator forces it, with a reason; the registry keeps who
forced it, why, and what was overridden.

One implementation for both ways in, `wardrobe models ...` (the store directly)
and /admin/models (service/admin.py). The registry (contract/store/registry.py)
stores the decision; every serving worker then follows the new champion
(service/registry_follower.py).
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable

from contract import metadata as meta
from contract.runtime import Classifier, ModelError, load_model_bytes
from contract.store import Store
from contract.store.registry import ModelRecord, Registry, RegistryError
from service.canary import MIN_ITEMS, Canary, held_out_items, run_canary

MAX_MODEL_BYTES = 64 * 1024 * 1024
"""Largest model file the registry takes (the shipped CNN is about 1 MiB)."""
MAX_TEST_ACCURACY_DROP = 0.01
"""A candidate's recorded Fashion-MNIST test accuracy may be at most this much (1 point) below the champion's."""


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


def test_accuracy(classifier: Classifier) -> float | None:
    """The Fashion-MNIST test accuracy recorded in the model's metadata (None: not recorded)."""
    try:
        return meta.number(classifier.info.metadata, meta.TEST_ACCURACY)
    except meta.MetadataError:
        return None


def objections(champion: Classifier, candidate: Classifier, canary: Canary) -> list[str]:
    """Why `candidate` should not replace `champion` (empty: nothing against it), each naming its figures."""
    found = []
    if not canary.passed:
        found.append(f"the canary: {canary.note}")
    elif canary.items < MIN_ITEMS:
        found.append(f"the canary had {canary.items} held-out items ({canary.which}), fewer than the {MIN_ITEMS} "
                     "it needs to judge; label more of the wardrobe's items")  # fmt: skip
    old, new = test_accuracy(champion), test_accuracy(candidate)
    name = f"the champion {champion.info.sha256[:12]}'s"
    if old is not None and new is None:
        found.append(f"its metadata records no Fashion-MNIST test accuracy ({name}: {old:.4f})")
    elif old is not None and new < old - MAX_TEST_ACCURACY_DROP - 1e-12:
        found.append(f"its Fashion-MNIST test accuracy {new:.4f} (model metadata) is more than "
                     f"{MAX_TEST_ACCURACY_DROP * 100:g} point below {name} {old:.4f}")  # fmt: skip
    return found


def promote(
    registry: Registry, sha: str, by: str, loaded: Callable[[str], Classifier | None] = lambda sha: None,
    force: str | None = None,
) -> tuple[ModelRecord, Canary]:  # fmt: skip
    """Make `sha` (or a unique prefix) the champion if it passes the contract check, the canary against
    the champion on the wardrobe's held-out items and the guard (`objections`); else mark it refused and
    raise PromotionRefused. `force`, the operator's reason, overrides the canary and the guard (never the
    contract check), and is recorded with `by` and what it overrode. `loaded(sha)` may hand over a model
    already open in this process (a serving worker's champion)."""
    if force is not None and not force.strip():
        raise PromotionRefused(400, "a forced promotion needs a reason (it is recorded with who forced it)")
    sha = registry.resolve(sha)
    champion_sha = registry.champion_sha256()
    if champion_sha == sha:
        raise RegistryError(f"model {sha[:12]} is the champion already")
    candidate = check_model(registry.onnx_bytes(sha), f"model {sha[:12]}")
    if champion_sha is None:  # the first champion: nothing to guard
        canary, against = run_canary(candidate, candidate, None), []
    else:
        champion = loaded(champion_sha) or check_model(registry.onnx_bytes(champion_sha), f"model {champion_sha[:12]}")
        canary = run_canary(champion, candidate, held_out_items(Store(registry.engine), candidate))
        against = objections(champion, candidate, canary)
    figures, note = canary.as_dict(), None
    if against and force is None:
        message = (
            f"model {sha[:12]} refused: {'; '.join(against)}. To promote it anyway: "
            f"wardrobe models promote {sha[:12]} --force --reason '...' (over HTTP: force and reason in the body)"
        )
        registry.refuse(sha, figures, message, by)
        raise PromotionRefused(409, message, canary)
    if against:
        figures["forced"] = {"by": by, "reason": force.strip(), "overrode": against}
        note = f"forced by {by}: {force.strip()} (overriding: {'; '.join(against)})"
    return registry.promote(sha, figures, by, expected_champion=champion_sha, note=note), canary


def rollback(registry: Registry, by: str) -> tuple[ModelRecord, ModelRecord]:
    """The previous champion comes back (no canary: a person asked for it, and it served before)."""
    return registry.rollback(by)
