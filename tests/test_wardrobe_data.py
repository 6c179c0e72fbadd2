"""Reading, freezing and splitting a person's wardrobe for fine-tuning."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
from conftest import make_items
from PIL import Image

from training.fashion_mnist import CLASSES
from training.wardrobe_data import (
    WardrobeError,
    as_records,
    check_enough,
    freeze,
    read_export,
    split_held_out,
    write_export,
)


def test_export_round_trip_keeps_every_item(fmnist, tmp_path):
    items = make_items(fmnist, per_class=3, person=2)
    write_export(as_records(items), tmp_path / "w.zip")
    back = read_export(tmp_path / "w.zip")
    order = np.argsort(items.ids)
    assert back.ids == tuple(sorted(items.ids))
    assert np.array_equal(back.images, items.images[order])
    assert np.array_equal(back.labels, items.labels[order])
    assert np.array_equal(back.predicted, items.predicted[order])
    assert back.label_source == tuple(items.label_source[i] for i in order)
    assert len(back.person_labelled()) == 20


def test_writing_the_same_items_twice_gives_the_same_bytes(fmnist, tmp_path):
    import time

    items = make_items(fmnist, per_class=2)
    write_export(as_records(items), tmp_path / "a.zip")
    time.sleep(2.1)  # zip time stamps have a 2-second resolution: "now" would differ by now
    write_export(as_records(items), tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def _rewrite_manifest(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "manifest.json":
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
            zout.writestr(name, data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format="wardrobe-export/9"), "format is 'wardrobe-export/9'"),
        (lambda m: m["items"][0].update(label="Scarf"), "has label 'Scarf'"),
        (lambda m: m["items"][1].update(id=m["items"][0]["id"]), "appears twice"),
        (lambda m: m.update(classes=[m["classes"][1], m["classes"][0], *m["classes"][2:]]), "classes .* are not"),
    ],
)
def test_malformed_export_names_the_zip_and_the_problem(fmnist, tmp_path, change, message):
    write_export(as_records(make_items(fmnist, per_class=1)), tmp_path / "good.zip")
    _rewrite_manifest(tmp_path / "good.zip", tmp_path / "bad.zip", change)
    with pytest.raises(WardrobeError, match=message) as info:
        read_export(tmp_path / "bad.zip")
    assert "bad.zip" in str(info.value)


def test_not_a_zip_and_missing_source_are_clear_errors(tmp_path):
    (tmp_path / "notes.zip").write_text("hello")
    with pytest.raises(WardrobeError, match="notes.zip: not a readable zip file"):
        freeze(str(tmp_path / "notes.zip"), tmp_path / "frozen.zip")
    with pytest.raises(WardrobeError, match="no such export zip or image folder"):
        freeze(str(tmp_path / "nowhere"), tmp_path / "frozen.zip")
    assert not (tmp_path / "frozen.zip").exists()


def test_image_folder_items_are_person_labelled_and_numbered_in_path_order(fmnist, tmp_path):
    for name, i in (("Sneaker", 0), ("T-shirt_top", 1), ("ankle boot", 2)):
        (tmp_path / "photos" / name).mkdir(parents=True)
        Image.fromarray(fmnist.test_images[i]).save(tmp_path / "photos" / name / f"photo{i}.png")
    snapshot = freeze(str(tmp_path / "photos"), tmp_path / "frozen.zip")
    items = snapshot.items
    assert items.ids == (1, 2, 3)
    assert snapshot.names == {1: "Sneaker/photo0.png", 2: "T-shirt_top/photo1.png", 3: "ankle boot/photo2.png"}
    assert [CLASSES[c] for c in items.labels] == ["Sneaker", "T-shirt/top", "Ankle boot"]
    assert set(items.label_source) == {"person"}
    assert np.array_equal(items.images[0], fmnist.test_images[0])  # a 28×28 crop passes through
    again = freeze(str(tmp_path / "photos"), tmp_path / "again.zip")
    assert again.sha256 == snapshot.sha256  # the same folder, the same checksum


def test_freezing_a_zip_copies_its_bytes_and_checksums_them(fmnist, tmp_path):
    write_export(as_records(make_items(fmnist, per_class=2)), tmp_path / "w.zip")
    snapshot = freeze(str(tmp_path / "w.zip"), tmp_path / "run" / "frozen.zip")
    assert (tmp_path / "run" / "frozen.zip").read_bytes() == (tmp_path / "w.zip").read_bytes()
    assert snapshot.sha256 == hashlib.sha256((tmp_path / "w.zip").read_bytes()).hexdigest()
    assert len(snapshot.items) == 20


def test_database_source_is_exported_through_the_store(fmnist, tmp_path):
    from contract.store import NewItem, Store

    url = f"sqlite:///{tmp_path / 'wardrobe.db'}"
    with Store.open(url) as db:
        added = db.add([
            NewItem(filename=f"{i}.jpg", thumbnail=b"", thumbnail_type="image/png", model_input=fmnist.test_images[i],
                    predicted_label=CLASSES[fmnist.test_labels[i]], confidence=0.9, top_k=[], unsure=False,
                    model_sha256="ab" * 32)
            for i in range(3)
        ])  # fmt: skip
        db.correct(added[1].id, "Bag")
    snapshot = freeze(url, tmp_path / "frozen.zip")
    assert snapshot.items.label_source == ("model", "person", "model")
    assert CLASSES[snapshot.items.labels[1]] == "Bag"
    assert snapshot.sha256 == hashlib.sha256((tmp_path / "frozen.zip").read_bytes()).hexdigest()
    with pytest.raises(WardrobeError, match="does not exist"):
        freeze(f"sqlite:///{tmp_path / 'none.db'}", tmp_path / "other.zip")


def test_held_out_split_is_stratified_seeded_and_disjoint():
    labels = np.repeat(np.arange(10), [8, 8, 8, 8, 8, 4, 4, 4, 2, 1])
    ids = tuple(range(100, 100 + len(labels)))
    train, held = split_held_out(ids, labels, 0.25, seed=0)
    assert len(np.intersect1d(train, held)) == 0
    assert len(train) + len(held) == len(labels)
    held_per_class = np.bincount(labels[held], minlength=10)
    assert list(held_per_class) == [2, 2, 2, 2, 2, 1, 1, 1, 1, 0]  # a lone item is never held out
    _, again = split_held_out(ids, labels, 0.25, seed=0)
    assert np.array_equal(held, again)
    _, other_seed = split_held_out(ids, labels, 0.25, seed=1)
    assert not np.array_equal(held, other_seed)


def test_held_out_items_stay_held_out_when_other_classes_grow():
    labels = np.repeat(np.arange(10), 8)
    ids = tuple(range(len(labels)))
    _, held = split_held_out(ids, labels, 0.25, seed=0)
    grown_labels = np.concatenate([labels, np.full(12, 3)])
    grown_ids = ids + tuple(range(1000, 1012))
    _, grown_held = split_held_out(grown_ids, grown_labels, 0.25, seed=0)
    before = {ids[i] for i in held if labels[i] != 3}
    after = {grown_ids[i] for i in grown_held if grown_labels[i] != 3}
    assert before == after


def test_too_few_items_names_the_short_classes_and_how_many_are_needed():
    labels = np.concatenate([np.repeat(np.arange(8), 3), [8]])  # one Bag, no Ankle boot
    with pytest.raises(WardrobeError, match=r"short: Bag \(1\), Ankle boot \(0\); add at least 3 more"):
        check_enough(labels, min_per_class=2, min_items=20, where="w.zip")
    with pytest.raises(WardrobeError, match="at least 40 in all are needed, 15 more"):
        check_enough(labels, min_per_class=0, min_items=40, where="w.zip")
    check_enough(np.repeat(np.arange(10), 2), min_per_class=2, min_items=20, where="w.zip")
