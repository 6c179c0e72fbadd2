"""The model registry in the store (contract/store/registry.py) and its decisions (service/promotion.py),
on SQLite and PostgreSQL: publish, list, promote through the canary, refuse, roll back, the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
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

    # No wardrobe items here, so the canary cannot judge: each step is forced, with a reason.
    promoted, canary = promotion.promote(registry, second.sha256[:10], "alice", force="the same network")
    assert promoted.state == "champion" and promoted.decided_by == "alice" and canary.passed
    promotion.promote(registry, third.sha256, "bob", force="the same network")
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
        with pytest.raises(
            PromotionRefused, match=r"refused: the canary: candidate 0\.\d+ \(95% Wilson interval"
        ) as refusal:
            promotion.promote(registry, bad.sha256, "test")
        # The tiny model's recorded Fashion-MNIST figure is named beside the champion's, too.
        tiny_test, shipped_test = (
            float(load_model(m).info.metadata["test_accuracy"]) for m in (tiny_model_path, MODEL)
        )
        assert f"its Fashion-MNIST test accuracy {tiny_test:.4f} (model metadata) is more than 1 point below the " \
            f"champion {good.sha256[:12]}'s {shipped_test:.4f}" in str(refusal.value)  # fmt: skip
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


def _labelled_wardrobe(store: Store, fmnist, per_class: int) -> None:
    """Real test-set crops a person labelled, written through the store's own writer."""
    items = make_items(fmnist, per_class=per_class)
    added = store.add([
        NewItem(filename=f"{i}.png", thumbnail=b"x", thumbnail_type="image/webp", model_input=image,
                predicted_label="Bag", confidence=0.5, top_k=[], unsure=False, model_sha256="0" * 64)
        for i, image in enumerate(items.images)
    ])  # fmt: skip
    for item, label in zip(added, items.labels, strict=True):
        store.correct(item.id, CLASSES[label])


def _recording(src, dst, test_accuracy: float):
    """The same network, recording another Fashion-MNIST test accuracy in its metadata."""
    proto = onnx.load(str(src))
    next(p for p in proto.metadata_props if p.key == "test_accuracy").value = f"{test_accuracy:.4f}"
    onnx.save(proto, str(dst))
    return dst


def test_a_model_recording_over_a_point_less_on_fashion_mnist_is_refused_unless_forced(database, fmnist, tmp_path):
    shipped = float(load_model(MODEL).info.metadata["test_accuracy"])
    with Store.open(database) as store, Registry(store.engine) as registry:
        _labelled_wardrobe(store, fmnist, per_class=1)  # 10 items: the canary can judge, and passes
        champion, _ = promotion.publish(registry, MODEL.read_bytes(), "test", shipped=True)
        registry.crown_if_none(champion.sha256, "start")
        close = _recording(MODEL, tmp_path / "close.onnx", shipped - 0.009)
        worse = _recording(MODEL, tmp_path / "worse.onnx", shipped - 0.0101)
        close_record, _ = promotion.publish(registry, close.read_bytes(), "test")
        worse_record, _ = promotion.publish(registry, worse.read_bytes(), "test")
        expected = (
            rf"model {worse_record.sha256[:12]} refused: its Fashion-MNIST test accuracy {shipped - 0.0101:.4f} "
            rf"\(model metadata\) is more than 1 point below the champion {champion.sha256[:12]}'s {shipped:.4f}"
        )
        with pytest.raises(PromotionRefused, match=expected) as refusal:
            promotion.promote(registry, worse_record.sha256, "test")
        assert refusal.value.status == 409 and "--force --reason" in refusal.value.message
        assert registry.get(worse_record.sha256).state == "refused"
        assert registry.champion_sha256() == champion.sha256
        with pytest.raises(PromotionRefused, match="a forced promotion needs a reason"):
            promotion.promote(registry, worse_record.sha256, "test", force="  ")

        forced, _ = promotion.promote(registry, worse_record.sha256, "dana", force="the figure was measured wrong")
        assert (forced.state, forced.decided_by) == ("champion", "dana")
        overrode = refusal.value.message.split("refused: ")[1].split(". To")[0]
        assert forced.canary["forced"] == {"by": "dana", "reason": "the figure was measured wrong",
                                           "overrode": [overrode]}  # fmt: skip
        assert forced.note == f"forced by dana: the figure was measured wrong (overriding: {overrode})"

        promotion.rollback(registry, "dana")
        promoted, canary = promotion.promote(registry, close_record.sha256, "test")  # within a point: taken
        assert canary.passed and canary.items == 10 and promoted.note is None and "forced" not in promoted.canary


def test_canary_on_too_few_items_cannot_replace_the_champion(database, fmnist, tmp_path):
    with Store.open(database) as store, Registry(store.engine) as registry:
        _labelled_wardrobe(store, fmnist, per_class=1)
        store.delete(store.page(limit=1).items[0].id)  # 9 left
        first, _ = promotion.publish(registry, MODEL.read_bytes(), "test", shipped=True)
        registry.crown_if_none(first.sha256, "start")
        other, _ = promotion.publish(registry, variant(MODEL, tmp_path / "b.onnx", note="b").read_bytes(), "test")
        with pytest.raises(PromotionRefused, match=r"the canary had 9 held-out items \(all 9 items a person "
                           r"labelled.*\), fewer than the 10 it needs to judge"):  # fmt: skip
            promotion.promote(registry, other.sha256, "test")


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
            promotion.promote(registry, second.sha256, "test", force="no wardrobe items: the same network")
            heard = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert heard == [second.sha256]


def test_cli_publishes_lists_promotes_and_rolls_back(database, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WARDROBE_DB", database)
    assert main(["models", "publish", str(MODEL)]) == 0
    sha = capsys.readouterr().out.split()[1]
    other = variant(MODEL, tmp_path / "b.onnx", note="b")
    assert main(["models", "publish", str(other)]) == 0
    other_sha = capsys.readouterr().out.split()[1]
    assert main(["models", "promote", sha[:12]]) == 0  # the first champion: nothing to guard
    assert f"champion: {sha}" in capsys.readouterr().out
    # An empty wardrobe: the canary has nothing to judge on, so replacing the champion takes --force and a reason.
    assert main(["models", "promote", other_sha]) == 1
    assert "fewer than the 10 it needs to judge" in capsys.readouterr().err
    assert main(["models", "promote", other_sha, "--force"]) == 1
    assert "--force needs --reason" in capsys.readouterr().err
    assert main(["models", "promote", other_sha, "--force", "--reason", "same network, new bytes"]) == 0
    out = capsys.readouterr().out
    assert f"champion: {other_sha}" in out and "forced by " in out and "same network, new bytes" in out
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["sha256"]: m["state"] for m in listed} == {sha: "previous", other_sha: "champion"}
    forced = next(m for m in listed if m["sha256"] == other_sha)
    assert forced["decided_by"] == promotion.command_line_user()
    assert forced["canary"]["forced"]["reason"] == "same network, new bytes"
    assert forced["note"].startswith(f"forced by {promotion.command_line_user()}: same network, new bytes")
    assert main(["models", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header == f"registry: {where()}" and "default" not in header  # which database, said first
    assert {tuple(row.split()[:2]) for row in rows} == {(other_sha[:12], "champion"), (sha[:12], "previous")}
    assert main(["models", "rollback"]) == 0
    assert f"champion: {sha}" in capsys.readouterr().out
    assert main(["models", "promote", "0123456789"]) == 1
    assert "no model 0123456789 in the registry" in capsys.readouterr().err
