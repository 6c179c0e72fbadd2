"""The wardrobe store against real databases: a SQLite file and a PostgreSQL server of our own."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import threading
import zipfile
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from PIL import Image

from contract.store import UNSURE, ExportError, ItemNotFound, NewItem, Store, StoreError, database_url
from contract.store.database import current_revision, head_revision
from contract.store.export import read_export, write_export
from contract.store.schema import items, metadata

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SHA = "0" * 63 + "1"


def _new(label: str = "Trouser", confidence: float = 0.9, unsure: bool = False, seed: int = 0, **kw) -> NewItem:
    crop = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    values = dict(filename=f"photo-{seed}.jpg", thumbnail=b"RIFF-thumb-%d" % seed, thumbnail_type="image/webp",
                  model_input=crop, predicted_label=label, confidence=confidence,
                  top_k=[{"label": label, "class_id": CLASSES.index(label), "probability": confidence}],
                  unsure=unsure, model_sha256=SHA)  # fmt: skip
    return NewItem(**(values | kw))


@pytest.fixture
def store(database):
    opened = Store.open(database)
    yield opened
    opened.close()


def test_a_new_database_gets_exactly_the_schema_the_code_queries(store):
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_a_stored_item_keeps_what_the_model_said_and_the_exact_input(store):
    new = _new("Sneaker", 0.81, seed=3)
    [added] = store.add([new])
    got = store.get(added.id)
    assert got == added
    assert (got.filename, got.predicted_label, got.confidence) == ("photo-3.jpg", "Sneaker", 0.81)
    assert got.model_sha256 == SHA
    assert got.top_k == new.top_k and got.label == "Sneaker" and got.label_source == "model"
    assert got.corrected_label is None and got.corrected_at is None
    assert got.added_at.tzinfo == UTC and abs((datetime.now(UTC) - got.added_at).total_seconds()) < 60
    assert np.array_equal(store.model_input(added.id), new.model_input)
    assert store.thumbnail(added.id) == (b"RIFF-thumb-3", "image/webp")


def test_many_thumbnails_come_in_one_read_and_unknown_ids_are_left_out(store):
    first, second = store.add([_new(seed=1), _new(seed=2)])
    assert store.thumbnails([second.id, 999, first.id]) == {
        first.id: (b"RIFF-thumb-1", "image/webp"), second.id: (b"RIFF-thumb-2", "image/webp")}  # fmt: skip
    assert store.thumbnails([]) == {}


def test_a_correction_wins_and_can_be_taken_back(store):
    [item] = store.add([_new("Shirt")])
    corrected = store.correct(item.id, "T-shirt/top")
    assert (corrected.label, corrected.label_source, corrected.shelf) == ("T-shirt/top", "person", "T-shirt/top")
    assert corrected.corrected_at is not None and corrected.corrected_at >= item.added_at
    assert store.get(item.id) == corrected
    undone = store.correct(item.id, None)
    assert (undone.label, undone.label_source, undone.corrected_at) == ("Shirt", "model", None)


def test_unsure_items_wait_on_their_own_shelf_until_the_person_decides(store):
    sure, unsure = store.add([_new("Coat", 0.95), _new("Dress", 0.31, unsure=True, seed=1)])
    assert (sure.shelf, unsure.shelf) == ("Coat", UNSURE)
    assert store.counts() == {"Coat": 1, UNSURE: 1}
    assert [i.id for i in store.page(shelf=UNSURE).items] == [unsure.id]
    store.correct(unsure.id, "Dress")
    assert store.counts() == {"Coat": 1, "Dress": 1}
    assert [i.id for i in store.page(corrected=True).items] == [unsure.id]
    assert [i.id for i in store.page(corrected=False).items] == [sure.id]
    assert store.corrected_count() == 1


def test_pages_are_newest_first_and_chain_without_gaps(store):
    added = store.add([_new(seed=i) for i in range(7)])
    seen, before = [], None
    while True:
        page = store.page(limit=3, before=before)
        seen += [i.id for i in page.items]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == [i.id for i in reversed(added)]
    with pytest.raises(ValueError, match="limit must be between 1 and 1000, got 0"):
        store.page(limit=0)


def test_an_unknown_id_is_item_not_found_everywhere(store):
    for call in (store.get, store.thumbnail, store.model_input, store.delete, lambda i: store.correct(i, "Bag")):
        with pytest.raises(ItemNotFound, match="no wardrobe item with id 404"):
            call(404)


def test_a_deleted_id_is_gone_and_never_given_again(store):
    first, last = store.add([_new(seed=1), _new(seed=2)])
    store.delete(last.id)
    with pytest.raises(ItemNotFound):
        store.get(last.id)
    [again] = store.add([_new(seed=3)])
    assert again.id > last.id
    assert store.get(first.id) == first


def _on_disk(path) -> bytes:
    """The database file and its write-ahead log, as bytes an attacker with the disk could read."""
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def test_a_deleted_photo_is_gone_from_the_database_file(tmp_path):
    path = tmp_path / "wardrobe.db"
    photo = os.urandom(3000)  # a thumbnail no page could hold by chance
    with Store.open(str(path)) as opened:
        [kept, removed] = opened.add([_new(seed=1), _new(seed=2, thumbnail=photo)])
        with opened.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    assert photo in _on_disk(path)  # stored: the check below can see it
    with Store.open(str(path)) as opened:
        opened.delete(removed.id)
        assert opened.get(kept.id) == kept
    assert photo not in _on_disk(path)


def test_without_secure_delete_a_deleted_photo_would_stay_readable(tmp_path):
    """The control for the test above: the same delete with SQLite's secure_delete off leaves the bytes."""
    import sqlite3

    path = tmp_path / "wardrobe.db"
    photo = os.urandom(3000)
    with Store.open(str(path)) as opened:
        [removed] = opened.add([_new(seed=2, thumbnail=photo)])
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA secure_delete = OFF")
    with connection:
        connection.execute("DELETE FROM items WHERE id = ?", (removed.id,))
    connection.close()
    assert photo in _on_disk(path)


def test_an_upload_is_stored_whole_or_not_at_all(store):
    [earlier] = store.add([_new(seed=1)])
    broken = _new(seed=3, predicted_label=None)  # NOT NULL: the database refuses the third row
    with pytest.raises(sa.exc.IntegrityError):
        store.add([_new(seed=2), _new(seed=4), broken])
    assert [i.id for i in store.page().items] == [earlier.id]


def test_a_bad_model_input_is_refused_before_anything_is_written(store):
    with pytest.raises(ValueError, match=r"model_input must be uint8 \[28, 28\], got float32 \[28, 28\]"):
        store.add([_new(seed=1), _new(seed=2, model_input=np.zeros((28, 28), np.float32))])
    assert store.counts() == {}


def _add_many(setting: str, worker: int, uploads: int, per_upload: int) -> list[int]:
    opened = Store.open(setting)
    try:
        ids = []
        for u in range(uploads):
            ids += [i.id for i in opened.add([_new(seed=worker * 1000 + u * 10 + k) for k in range(per_upload)])]
        return ids
    finally:
        opened.close()


def test_concurrent_writers_in_several_processes_all_land(database):
    # Fresh processes open the same new database at once: the migration runs once, every write lands.
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        results = pool.starmap(_add_many, [(database, w, 6, 3) for w in range(4)])
    ids = [i for r in results for i in r]
    assert len(ids) == len(set(ids)) == 4 * 6 * 3
    with Store.open(database) as store:
        assert sum(store.counts().values()) == 72


def test_concurrent_writers_in_threads_all_land(store):
    errors: list[Exception] = []

    def work(worker: int) -> None:
        try:
            for u in range(5):
                store.add([_new(seed=worker * 100 + u * 10 + k) for k in range(4)])
        except Exception as exc:  # collected: an assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(store.counts().values()) == 6 * 5 * 4


def _write_then_hang(setting: str, committed: int, ready) -> None:
    store = Store.open(setting)
    for i in range(committed):
        store.add([_new(seed=i)])
    with store._writer.begin() as connection:  # an upload in progress: some rows written, not committed
        connection.execute(sa.insert(items), [
            {"added_at": datetime.now(UTC), "filename": "half.jpg", "thumbnail": b"t", "thumbnail_type": "image/webp",
             "model_input": bytes(784), "predicted_label": "Bag", "confidence": 0.5, "top_k": [], "unsure": False,
             "model_sha256": SHA},
        ] * 3)  # fmt: skip
        ready.set()
        threading.Event().wait(60)


def test_a_writer_killed_mid_upload_loses_no_earlier_item_and_leaves_no_half(database):
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_write_then_hang, args=(database, 3, ready))
    child.start()
    try:
        assert ready.wait(60), "the writer never reached its open transaction"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(30)
    with Store.open(database) as store:
        names = [i.filename for i in store.page().items]
        assert sorted(names) == ["photo-0.jpg", "photo-1.jpg", "photo-2.jpg"]
        store.add([_new(seed=9)])  # and the database takes writes again (no lock left behind)


def test_sqlite_runs_in_wal_mode(tmp_path):
    with Store.open(str(tmp_path / "w.db")) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_reading_a_wardrobe_that_does_not_exist_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.db"
    with pytest.raises(StoreError, match=f"wardrobe database {missing} does not exist"):
        Store.open(str(missing), create=False)
    assert not missing.exists()


def test_an_unreachable_postgres_names_the_server_without_the_password():
    with pytest.raises(StoreError, match=r"postgresql\+psycopg://me:\*\*\*@127\.0\.0\.1:9/w: .*"):
        Store.open("postgresql://me:secret@127.0.0.1:9/w")


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("/var/lib/w.db", "sqlite:////var/lib/w.db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("postgresql://u:p@db:5432/w", "postgresql+psycopg://u:***@db:5432/w"),
        ("postgres://u@db/w", "postgresql+psycopg://u@db/w"),
    ],
)
def test_wardrobe_db_takes_a_path_or_a_url(setting, expected):
    assert database_url(setting).render_as_string(hide_password=True) == expected


def test_the_default_database_is_a_file_in_the_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert database_url("").database == str(tmp_path / "wardrobe" / "wardrobe.db")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("mysql://u:secret@db/w", r"WARDROBE_DB: unsupported database 'mysql' in 'mysql://u:\*\*\*@db/w'"),
        ("sqlite://", "WARDROBE_DB: a SQLite URL must name a file"),
        ("sqlite:///:memory:", "WARDROBE_DB: a SQLite URL must name a file"),
    ],
)
def test_an_unusable_wardrobe_db_is_refused_naming_the_setting(setting, message):
    with pytest.raises(ValueError, match=message):
        database_url(setting)


# ---------------------------------------------------------------------------
# The export zip


def _export(store: Store) -> bytes:
    buffer = io.BytesIO()
    write_export(store.labelled_images(), CLASSES, buffer)
    return buffer.getvalue()


def test_the_export_is_an_image_folder_with_a_manifest_and_the_person_wins(store):
    shirt, boot, unsure = store.add([_new("Shirt", seed=1), _new("Ankle boot", seed=2),
                                     _new("Dress", 0.2, unsure=True, seed=3)])  # fmt: skip
    store.correct(shirt.id, "T-shirt/top")
    data = _export(store)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == sorted(
            ["manifest.json", f"T-shirt_top/{shirt.id}.png", f"Ankle boot/{boot.id}.png", f"Dress/{unsure.id}.png"]
        )
        manifest = json.loads(archive.read("manifest.json"))
        with Image.open(io.BytesIO(archive.read(f"T-shirt_top/{shirt.id}.png"))) as png:
            assert (png.format, png.mode, png.size) == ("PNG", "L", (28, 28))
            assert np.array_equal(np.asarray(png), store.model_input(shirt.id))
    assert manifest["format"] == "wardrobe-export/1" and manifest["classes"] == CLASSES
    first = manifest["items"][0]
    assert set(first) == {"id", "file", "label", "label_source", "predicted_label", "confidence", "model_sha256",
                          "added_at", "corrected_at"}  # fmt: skip
    assert (first["id"], first["label"], first["label_source"], first["predicted_label"]) == (
        shirt.id, "T-shirt/top", "person", "Shirt")  # fmt: skip
    assert datetime.fromisoformat(first["corrected_at"]).tzinfo is not None
    assert [(i["label"], i["label_source"], i["corrected_at"]) for i in manifest["items"][1:]] == [
        ("Ankle boot", "model", None), ("Dress", "model", None)]  # fmt: skip


def test_an_export_reads_back_exactly(store):
    added = store.add([_new("Bag", seed=5), _new("Sandal", seed=6)])
    store.correct(added[1].id, "Sneaker")
    exported = read_export(io.BytesIO(_export(store)))
    assert exported.classes == tuple(CLASSES)
    assert [(i.id, i.label, i.label_source) for i in exported.items] == [
        (added[0].id, "Bag", "model"), (added[1].id, "Sneaker", "person")]  # fmt: skip
    for item in exported.items:
        assert np.array_equal(item.image, store.model_input(item.id))
        assert item.added_at == store.get(item.id).added_at


def _zip(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    buffer.seek(0)
    buffer.name = "export.zip"
    return buffer


def _manifest(**changes) -> bytes:
    item = {
        "id": 1,
        "file": "Bag/1.png",
        "label": "Bag",
        "label_source": "model",
        "predicted_label": "Bag",
        "confidence": 0.9,
        "model_sha256": SHA,
        "added_at": "2026-11-26T03:00:00+00:00",
        "corrected_at": None,
    }
    manifest = {"format": "wardrobe-export/1", "classes": CLASSES, "items": [item | changes]}
    return json.dumps(manifest).encode()


PNG = Image.new("L", (28, 28))
_png = io.BytesIO()
PNG.save(_png, "PNG")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"Bag/1.png": _png.getvalue()}, "export.zip: no manifest.json in the zip"),
        ({"manifest.json": b"{"}, "export.zip: manifest.json is not valid JSON"),
        ({"manifest.json": b'{"format": "other/2"}'}, "manifest.json format is 'other/2'"),
        ({"manifest.json": _manifest()}, r"manifest lists 'Bag/1.png' but the zip has no such file"),
        ({"manifest.json": _manifest(label="Hat"), "Bag/1.png": _png.getvalue()}, "has label 'Hat', not one of"),
        ({"manifest.json": _manifest(label_source="guess"), "Bag/1.png": _png.getvalue()}, "label_source 'guess'"),
        ({"manifest.json": _manifest(), "Bag/1.png": b"not a png"}, "Bag/1.png: not a readable PNG"),
    ],
    ids=["no-manifest", "bad-json", "other-format", "missing-file", "unknown-label", "bad-source", "bad-png"],
)
def test_a_broken_export_is_refused_naming_what_is_wrong(files, message):
    with pytest.raises(ExportError, match=message):
        read_export(_zip(files))


def test_something_that_is_not_a_zip_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "wardrobe.zip"
    path.write_text("hello")
    with pytest.raises(ExportError, match=f"{path}: not a readable zip file"):
        read_export(path)
