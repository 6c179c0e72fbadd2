"""Fine-tuning on a person's wardrobe: frozen export, label issues, held-out split, measured result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import REPO, make_items, tiny_checkpoint
from test_stats import mcnemar_p_by_counting, wilson_by_inversion

from training.base_weights import from_onnx, load_base
from training.config import ConfigError, load_config
from training.export import export
from training.fashion_mnist import CLASSES
from training.finetune import epoch_data, run_from_cli
from training.wardrobe_data import WardrobeError, WardrobeItems, as_records, write_export

FINETUNE = REPO / "configs" / "finetune.toml"
QUICK = ["epochs=1", "finetune.replay=256", "batch_size=64", "threads=1"]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("base") / "tiny.pt", steps=300)


def planted_wardrobe(fmnist, path: Path) -> tuple[Path, str]:
    """40 person-labelled items (4 per class), 10 more the model labelled, one trouser mis-dragged onto Bag."""
    items = make_items(fmnist, per_class=5, person=4)
    labels = items.labels.copy()
    trouser = next(
        i for i, (c, s) in enumerate(zip(labels, items.label_source, strict=True)) if c == 1 and s == "person"
    )
    labels[trouser] = CLASSES.index("Bag")
    items = WardrobeItems(items.ids, items.images, labels, items.label_source, items.predicted)
    write_export(as_records(items), path)
    return path, items.ids[trouser]


def test_finetune_config_needs_a_wardrobe(tmp_path, capsys):
    from wardrobe.cli import main as cli

    assert cli(["train", "--config", str(FINETUNE), "--set", f"out_dir={str(tmp_path)!r}"]) == 1
    assert "this config fine-tunes (finetune.base = 'default'); say on which wardrobe with --set data.wardrobe=" in (
        capsys.readouterr().err
    )
    assert not any(tmp_path.iterdir())


def test_a_wardrobe_without_starting_weights_is_refused():
    with pytest.raises(ConfigError, match="needs starting weights: use configs/finetune.toml"):
        load_config(REPO / "configs" / "cnn.toml", ['data.wardrobe="w.zip"'])


def test_shipped_start_weights_are_the_shipped_default_model():
    """models/cnn.pt must compute what models/cnn.onnx computes (replace both together)."""
    from contract.runtime import load_model
    from training import fashion_mnist

    state = torch.load(REPO / "models" / "cnn.pt", map_location="cpu", weights_only=True)
    assert set(state) >= {"model", "config"}
    assert (REPO / "models" / "cnn.pt").stat().st_size < 4_000_000
    model, cfg, _ = load_base(REPO / "models" / "cnn.pt")
    images = fashion_mnist.load().test_images[:500]
    x = torch.from_numpy(images).float().div(255)[:, None]
    with torch.no_grad():
        logits = model(x)
        if cfg.tta_flip:
            logits = (logits + model(x.flip(-1))) / 2
    shipped = load_model(REPO / "models" / "cnn.onnx", device="cpu")
    temperature = float(shipped.info.metadata.get("temperature", 1.0))  # the export divides by it
    assert np.abs(logits.numpy() / temperature - shipped.logits(x.numpy())).max() < 1e-3


def test_start_weights_rebuilt_from_onnx_match_the_onnx_file(tiny_model_path, fmnist):
    from contract.runtime import load_model

    model, cfg = from_onnx(tiny_model_path)
    assert cfg.model.batchnorm is False
    x = torch.from_numpy(fmnist.test_images[:64]).float().div(255)[:, None]
    with torch.no_grad():
        logits = (model(x) + model(x.flip(-1))) / 2
    onnx_model = load_model(tiny_model_path, device="cpu")
    temperature = float(onnx_model.info.metadata["temperature"])
    assert np.abs(logits.numpy() / temperature - onnx_model.logits(x.numpy())).max() < 1e-3  # T kept to 4 digits


def test_an_epoch_mixes_replay_with_oversampled_own_items_only(fmnist):
    cfg = load_config(FINETUNE, ['data.wardrobe="w.zip"', "finetune.replay=300", "finetune.own_share=0.4"])
    own = make_items(fmnist, per_class=3)
    pool = (fmnist.train_images[:1000], fmnist.train_labels[:1000])
    images, labels, is_own = epoch_data(own, pool, cfg, epoch=0)
    assert is_own.sum() == 200 and len(images) == 500 and not is_own[:300].any()  # 0.4 of the epoch
    own_part = images[300:]
    counts = [int(np.all(own_part == own.images[i], axis=(1, 2)).sum()) for i in range(len(own))]
    assert min(counts) >= 6 and max(counts) - min(counts) <= 1  # every item about equally often
    assert np.array_equal(
        labels[300:], [own.labels[np.flatnonzero(np.all(own.images == im, axis=(1, 2)))[0]] for im in own_part]
    )
    again, _, _ = epoch_data(own, pool, cfg, epoch=0)
    other, _, _ = epoch_data(own, pool, cfg, epoch=1)
    assert np.array_equal(images, again) and not np.array_equal(images, other)


def test_too_few_items_is_a_clear_error_and_leaves_no_run(fmnist, tiny_base, tmp_path):
    items = make_items(fmnist, per_class=3)
    keep = np.flatnonzero(items.labels != CLASSES.index("Bag"))
    write_export(as_records(items.subset(keep)), tmp_path / "w.zip")
    out = tmp_path / "runs"
    with pytest.raises(WardrobeError, match=r"short: Bag \(0\); add at least 2 more"):
        run_from_cli(FINETUNE, [f"data.wardrobe={str(tmp_path / 'w.zip')!r}", f"finetune.base={str(tiny_base)!r}",
                                f"out_dir={str(out)!r}", *QUICK])  # fmt: skip
    assert list(out.iterdir()) == []  # no run directory, no half-frozen export


def test_a_pinned_checksum_refuses_a_changed_wardrobe(fmnist, tiny_base, tmp_path):
    write_export(as_records(make_items(fmnist, per_class=3)), tmp_path / "w.zip")
    with pytest.raises(WardrobeError, match="is not the pinned data.wardrobe_sha256 0000"):
        run_from_cli(FINETUNE, [f"data.wardrobe={str(tmp_path / 'w.zip')!r}", f"finetune.base={str(tiny_base)!r}",
                                f"out_dir={str(tmp_path / 'runs')!r}", f"data.wardrobe_sha256={'0' * 64!r}",
                                *QUICK])  # fmt: skip
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.slow
def test_finetune_run_freezes_lists_splits_measures_and_exports(fmnist, tiny_base, tmp_path):
    source, mislabelled = planted_wardrobe(fmnist, tmp_path / "wardrobe.zip")
    run_dir = run_from_cli(FINETUNE, [f"data.wardrobe={str(source)!r}", f"finetune.base={str(tiny_base)!r}",
                                      f"out_dir={str(tmp_path / 'runs')!r}", *QUICK])  # fmt: skip
    sha = hashlib.sha256(source.read_bytes()).hexdigest()

    # Frozen: the exact bytes, their checksum and count in the run's config.
    assert (run_dir / "wardrobe-export.zip").read_bytes() == source.read_bytes()
    record = json.loads((run_dir / "config.json").read_text())
    assert record["config"]["data"]["wardrobe_sha256"] == sha
    assert record["config"]["data"]["wardrobe_items"] == 50
    assert record["config"]["model"]["channels"] == [8, 16]  # the base's architecture, not the toml's default

    # The mis-dragged trouser is listed first or near it, and kept.
    issues = json.loads((run_dir / "label_issues.json").read_text())
    assert mislabelled in [row["id"] for row in issues[:3]]
    assert next(r for r in issues if r["id"] == mislabelled)["model_says"] == "Trouser"

    # Stratified held-out set of the 40 person-labelled items; the 10 model-labelled ones unused.
    wardrobe = record["wardrobe"]
    assert (wardrobe["labelled"], wardrobe["own_train"], wardrobe["held_out"]) == (40, 30, 10)
    held = set(wardrobe["held_out_ids"])
    assert len(held) == 10

    # Measured before and after, with intervals.
    result = json.loads((run_dir / "finetune.json").read_text())
    for name, n in (("held_out", 10), ("fashion_mnist_test", 10000)):
        r = result[name]
        for when in ("before", "after"):
            assert (r[when]["n"], r[when]["accuracy"]) == (n, r[when]["correct"] / n)
            assert r[when]["ci95"] == pytest.approx(wilson_by_inversion(r[when]["correct"], n), abs=2e-6)
        assert r["after"]["correct"] - r["before"]["correct"] == r["fixed"] - r["broken"]  # the pairs add up
        assert r["mcnemar_p"] == pytest.approx(mcnemar_p_by_counting(r["fixed"], r["broken"]))
    assert sum(v["n"] for v in result["held_out"]["per_class"].values()) == 10

    # The exported model says which corrections it learned from.
    model = export(run_dir, tmp_path / "new.onnx").path
    metadata = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert metadata["wardrobe_sha256"] == sha
    assert metadata["wardrobe_items"] == "50"
    assert set(json.loads(metadata["wardrobe_held_out"])) == held
    assert json.loads(metadata["config"])["data"]["wardrobe_sha256"] == sha
