"""The model registry in the store (contract/store/registry.py) and its decisions (service/promotion.py),
on SQLite and PostgreSQL: publish, list, promote through the canary, refuse, roll back, the CLI."""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest
from conftest import make_items
from wardrobe_server import MODEL

from benchmarks.registry_follow import variant
from contract.runtime import load_model
from contract.store import HeldOut, NewItem, Store, held_out_for
from contract.store.registry import CHANNEL, Registry, RegistryError
from service import promotion
from service.canary import run_canary
from service.promotion import PromotionRefused
from service.registry_cli import where
from training.fashion_mnist import CLASSES
from training.wardrobe_data import as_records
from wardrobe.cli import main


@pytest.fixture
def registry(database):
    with Registry.open(database) as registry:
        yield registry


def test_publish_is_idempotent_and_records_where_a_model_came_from(registry, tmp_path):
    shipped, new = promotion.publish(registry, MODEL.read_bytes(), "test", shipped=True)
    assert new and shipped.origin == "shipped" and shipped.state == "candidate"
    again, new_again = promotion.publish(registry, MODEL.read_bytes(), "someone else")
    assert not new_again and again.published_by == "test"
    tuned = variant(MODEL, tmp_path / "tuned.onnx", wardrobe_sha256="ab" * 32, wardrobe_items="40")
    record, _ = promotion.publish(registry, tuned.read_bytes(), "test")
    assert (record.origin, record.wardrobe_sha256, record.wardrobe_items) == ("fine-tune", "ab" * 32, 40)
    assert registry.onnx_bytes(record.sha256) == tuned.read_bytes()
    assert [r.sha256 for r in registry.records()] == [record.sha256, shipped.sha256]


def test_a_file_that_breaks_the_contract_is_never_registered(registry):
    with pytest.raises(PromotionRefused, match="breaks the model contract: the uploaded model: not an ONNX model"):
        promotion.publish(registry, b"not a model", "test")
    assert registry.records() == []


def test_promote_and_rollback_walk_the_champion_through_history(registry, tmp_path):
    first, _ = promotion.publish(registry, MODEL.read_bytes(), "test", shipped=True)
    assert registry.crown_if_none(first.sha256, "start") and not registry.crown_if_none("0" * 64, "start")
    second, _ = promotion.publish(registry, variant(MODEL, tmp_path / "b.onnx", note="b").read_bytes(), "test")
    third, _ = promotion.publish(registry, variant(MODEL, tmp_path / "c.onnx", note="c").read_bytes(), "test")

    promoted, canary = promotion.promote(registry, second.sha256[:10], "alice")
    assert promoted.state == "champion" and promoted.decided_by == "alice" and canary.passed
    promotion.promote(registry, third.sha256, "bob")
    states = {r.sha256: r.state for r in registry.records()}
    assert states == {first.sha256: "previous", second.sha256: "previous", third.sha256: "champion"}
    with pytest.raises(RegistryError, match="is the champion already"):
        promotion.promote(registry, third.sha256, "bob")

    back, old = promotion.rollback(registry, "carol")
    assert (back.sha256, old.sha256, old.state) == (second.sha256, third.sha256, "candidate")
    back, _ = promotion.rollback(registry, "carol")
    assert back.sha256 == first.sha256 == registry.champion_sha256()
    with pytest.raises(RegistryError, match="no previous model to roll back to"):
        promotion.rollback(registry, "carol")


def test_unknown_or_ambiguous_sha_is_a_clear_error(registry):
    with pytest.raises(RegistryError, match="no model deadbeef0 in the registry"):
        registry.resolve("deadbeef0")
    with pytest.raises(RegistryError, match="not a SHA-256"):
        registry.resolve("../etc/passwd")


def test_canary_refuses_a_worse_model_with_its_wilson_interval(database, fmnist, tiny_model_path):
    items = make_items(fmnist, per_class=8)
    with Store.open(database) as store, Registry(store.engine) as registry:
        # The wardrobe: 80 real test-set crops a person labelled, written through the store's own writer.
        added = store.add([
            NewItem(filename=f"{i}.png", thumbnail=b"x", thumbnail_type="image/webp", model_input=image,
                    predicted_label="Bag", confidence=0.5, top_k=[], unsure=False, model_sha256="0" * 64)
            for i, image in enumerate(items.images)
        ])  # fmt: skip
        for item, label in zip(added, items.labels, strict=True):
            store.correct(item.id, CLASSES[label])
        good, _ = promotion.publish(registry, MODEL.read_bytes(), "test", shipped=True)
        registry.crown_if_none(good.sha256, "start")
        bad, _ = promotion.publish(registry, tiny_model_path.read_bytes(), "test")
        with pytest.raises(PromotionRefused, match=r"refused by the canary: candidate 0\.\d+ \(95% Wilson interval"):
            promotion.promote(registry, bad.sha256, "test")
        refused = registry.get(bad.sha256)
        assert refused.state == "refused" and refused.canary["items"] == 80
        # The figures are the held-out selection's, measured independently here.
        held = held_out_for(store.labelled_images(), {})
        truth = np.array([load_model(MODEL).classes.index(label) for label in held.labels])
        tiny = load_model(tiny_model_path, device="cpu")
        expected = float(np.mean(tiny.logits(held.images.astype(np.float32)[:, None] / 255).argmax(1) == truth))
        assert refused.canary["candidate_accuracy"] == pytest.approx(expected)
        low, high = refused.canary["candidate_wilson95"]
        assert low < expected < high
        assert registry.champion_sha256() == good.sha256


def test_canary_without_items_checks_only_the_contract():
    model = load_model(MODEL, device="cpu")
    result = run_canary(model, model, HeldOut([], "no wardrobe"))
    assert result.passed and "only the model contract was checked" in result.note


def test_held_out_selection_follows_the_models_metadata(fmnist):
    items = make_items(fmnist, per_class=4, person=2)
    records = as_records(items)
    everyone = held_out_for(records, {})
    assert len(everyone) == 20 and everyone.which.startswith("all 20 items a person labelled")
    wanted = [i for i, s in zip(items.ids, items.label_source, strict=True) if s == "person"][:5]
    chosen = held_out_for(records, {"wardrobe_held_out": json.dumps(wanted + [999999])})
    assert sorted(chosen.ids) == sorted(wanted) and chosen.which == "the 5 of its 6 held-out items found in " \
        "this wardrobe (not the export it was fine-tuned on)"  # fmt: skip


def test_postgresql_promotion_notifies_listeners(postgres, tmp_path):
    url = postgres.create_database("notify")
    with Registry.open(url) as registry:
        first, _ = promotion.publish(registry, MODEL.read_bytes(), "test", shipped=True)
        registry.crown_if_none(first.sha256, "start")
        second, _ = promotion.publish(registry, variant(MODEL, tmp_path / "b.onnx", note="b").read_bytes(), "test")
        with psycopg.connect(url, autocommit=True) as listener:
            listener.execute(f"LISTEN {CHANNEL}")
            promotion.promote(registry, second.sha256, "test")
            heard = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert heard == [second.sha256]


def test_cli_publishes_lists_promotes_and_rolls_back(database, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WARDROBE_DB", database)
    assert main(["models", "publish", str(MODEL)]) == 0
    sha = capsys.readouterr().out.split()[1]
    other = variant(MODEL, tmp_path / "b.onnx", note="b")
    assert main(["models", "publish", str(other)]) == 0
    other_sha = capsys.readouterr().out.split()[1]
    assert main(["models", "promote", sha[:12]]) == 0
    assert f"champion: {sha}" in capsys.readouterr().out
    assert main(["models", "promote", other_sha]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["sha256"]: m["state"] for m in listed} == {sha: "previous", other_sha: "champion"}
    assert main(["models", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header == f"registry: {where()}" and "default" not in header  # which database, said first
    assert {tuple(row.split()[:2]) for row in rows} == {(other_sha[:12], "champion"), (sha[:12], "previous")}
    assert main(["models", "rollback"]) == 0
    assert f"champion: {sha}" in capsys.readouterr().out
    assert main(["models", "promote", "0123456789"]) == 1
    assert "no model 0123456789 in the registry" in capsys.readouterr().err
