"""Fine-tune the shipped model on a person's wardrobe: their corrections, Fashion-MNIST replay.

The recipe is `main`'s four steps, in order: `freeze` the wardrobe (copied beside the run and
checksummed) and split the person's items into own-train and held-out; `measure_start`: list
the corrections the start model most strongly disagrees with (confident learning; kept, not
dropped: the person decides) and measure it; `train` through the same epoch loop as training
from scratch (training/train.py), with replay and distillation; `summarise` the before/after
change on the held-out items and the Fashion-MNIST test set. Run it as

    wardrobe train --config configs/finetune.toml --set data.wardrobe=<zip | folder | URL>
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from contract.files import make_temp_beside, move_into_place, sha256_file, write_json
from contract.split import stratified_split
from contract.stats import accuracy_with_interval, mcnemar
from training import fashion_mnist, progress, wardrobe_data
from training.base_weights import load_base, resolve
from training.checkpoint import save_checkpoint
from training.config import ConfigError, TrainConfig, load_config
from training.data import TensorBatchLoader
from training.label_issues import find_label_issues
from training.models import count_parameters
from training.optim import build_optimizer, build_scheduler
from training.precision import resolve_precision
from training.run_log import RunLog
from training.train import evaluate, resolve_device, source_commit, train_one_epoch
from training.wardrobe_data import WardrobeItems

SHOWN_ISSUES = 10  # corrections listed on the console; label_issues.json has them all


def distillation(teacher: nn.Module, weight: float):
    """The extra loss of Learning without Forgetting (Li & Hoiem 2016): on the replay images, stay
    close to what the start model answered, not only to the label; weighted by the replay share."""

    def loss(x: torch.Tensor, logits: torch.Tensor, replay: torch.Tensor) -> torch.Tensor:
        if not replay.any():
            return logits.new_zeros(())
        with torch.no_grad():
            target = F.softmax(teacher(x[replay]), dim=1)
        drift = F.kl_div(F.log_softmax(logits[replay], dim=1), target, reduction="batchmean")
        return weight * drift * replay.float().mean()

    return loss


def compare(before: np.ndarray, after: np.ndarray) -> dict:
    """Paired before/after correctness: both accuracies with intervals, the change, and McNemar's
    exact test on the items where exactly one of them is right."""
    b, a = accuracy_with_interval(before), accuracy_with_interval(after)
    test = mcnemar(after, before)
    return {
        "before": b,
        "after": a,
        "change_points": round(100 * (a["accuracy"] - b["accuracy"]), 2),
        "fixed": test["a_only"],
        "broken": test["b_only"],
        "mcnemar_p": test["p_exact"],
    }


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, device, tta_flip: bool) -> np.ndarray:
    """Probabilities float64 [N, 10] for uint8 [N, 28, 28] images."""
    loader = TensorBatchLoader(images, np.zeros(len(images), np.int64), 1000, device)
    _, _, logits = evaluate(model, loader, device, tta_flip, channels_last=False)
    return torch.softmax(logits.double(), dim=1).numpy()


def measure(model, held: WardrobeItems, ds, device, tta_flip: bool) -> dict[str, np.ndarray]:
    """Per-image correctness on the person's held-out items and on the Fashion-MNIST test set."""
    return {
        "held_out": predict(model, held.images, device, tta_flip).argmax(1) == held.labels,
        "fashion_mnist_test": predict(model, ds.test_images, device, tta_flip).argmax(1) == ds.test_labels,
    }


def label_issues(items: WardrobeItems, probabilities: np.ndarray, names: dict[int, str]) -> list[dict]:
    """The person's labels the starting model most strongly disagrees with, most doubtful first."""
    rows = []
    for i in find_label_issues(items.labels, probabilities):
        rows.append(
            {
                "id": items.ids[i],
                **({"file": names[items.ids[i]]} if items.ids[i] in names else {}),
                "label": fashion_mnist.CLASSES[items.labels[i]],
                "model_says": fashion_mnist.CLASSES[int(probabilities[i].argmax())],
                "model_probability_of_label": round(float(probabilities[i, items.labels[i]]), 4),
                "model_confidence": round(float(probabilities[i].max()), 4),
            }
        )
    return rows


def epoch_data(own: WardrobeItems, replay_pool: tuple[np.ndarray, np.ndarray], cfg, epoch: int):
    """One epoch's images: `replay` fresh Fashion-MNIST images plus the person's own-train items,
    repeated (each about equally often) until they make up `own_share` of the epoch; and which of
    them are the person's."""
    f = cfg.finetune
    rng = np.random.default_rng([cfg.seed, epoch])
    pool_images, pool_labels = replay_pool
    replay = rng.choice(len(pool_labels), size=min(f.replay, len(pool_labels)), replace=False)
    n_own = len(own) if f.own_share >= 1 or not len(replay) else round(len(replay) * f.own_share / (1 - f.own_share))
    n_own = max(n_own, len(own))
    repeats = -(-n_own // len(own))
    own_idx = np.concatenate([rng.permutation(len(own)) for _ in range(repeats)])[:n_own]
    images = np.concatenate([pool_images[replay], own.images[own_idx]])
    labels = np.concatenate([pool_labels[replay], own.labels[own_idx]])
    return images, labels, np.arange(len(labels)) >= len(replay)


@dataclass(frozen=True)
class FrozenWardrobe:
    """What a run learns from: the frozen export, the labelled items, and their split."""

    snapshot: wardrobe_data.Snapshot
    items: WardrobeItems
    own: WardrobeItems
    """Own-train: the person's items the model trains on."""
    held: WardrobeItems
    """Held out: never trained on, the before/after measure."""


def freeze(cfg: TrainConfig) -> FrozenWardrobe:
    """Step 1: freeze the wardrobe beside the run directories (a pinned checksum must match) and split
    the labelled items; a wardrobe too small to split leaves nothing behind."""
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_beside(out_dir / "wardrobe-export.zip", suffix=".zip")
    where = f"data.wardrobe {cfg.data.wardrobe}"
    try:
        snapshot = wardrobe_data.freeze(cfg.data.wardrobe, tmp)
        if cfg.data.wardrobe_sha256 and snapshot.sha256 != cfg.data.wardrobe_sha256:
            raise wardrobe_data.WardrobeError(
                f"{where}: export checksum {snapshot.sha256} is not the pinned "
                f"data.wardrobe_sha256 {cfg.data.wardrobe_sha256}; the wardrobe changed since that run"
            )
        items = snapshot.items if cfg.finetune.labels == "all" else snapshot.items.person_labelled()
        wardrobe_data.check_enough(items.labels, cfg.finetune.min_per_class, cfg.finetune.min_items, where)
        own, held = wardrobe_data.split_held_out(items.ids, items.labels, cfg.finetune.held_out, cfg.data.split_seed)
        if len(own) == 0 or len(held) == 0:
            raise wardrobe_data.WardrobeError(f"{where}: too few labelled items to split into train and held-out")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return FrozenWardrobe(snapshot, items, items.subset(own), items.subset(held))


def measure_start(model: nn.Module, wardrobe: FrozenWardrobe, ds, cfg, device, run_dir: Path, log: RunLog):
    """Step 2, before training: which of the person's labels does the start model doubt most
    (label_issues.json; its predictions are out-of-sample for all of them, as confident learning
    needs), and how right is it on the held-out items and Fashion-MNIST? Returns (correctness, issues)."""
    probabilities = predict(model, wardrobe.items.images, device, cfg.tta_flip)
    issues = label_issues(wardrobe.items, probabilities, wardrobe.snapshot.names)
    write_json(issues, run_dir / "label_issues.json")
    if issues:
        log.info(f"{len(issues)} labels the current model strongly disagrees with (kept; check them on the page):")
        for row in issues[:SHOWN_ISSUES]:
            where = f" ({row['file']})" if "file" in row else ""
            log.info(
                f"  item {row['id']}{where}: labelled {row['label']}, model says {row['model_says']} "
                f"(p(label) = {row['model_probability_of_label']:.3f})"
            )
    else:
        log.info("confident learning finds no label the current model strongly disagrees with")
    return measure(model, wardrobe.held, ds, device, cfg.tta_flip), issues


def train(model: nn.Module, own: WardrobeItems, ds, split, cfg: TrainConfig, device, log: RunLog) -> float:
    """Step 3: the recipe's epochs, each a fresh replay draw plus the oversampled own-train items,
    through the epoch loop of training from scratch; returns the last validation accuracy. No model
    selection on the held-out items (that would be training on them): the last epoch is the result."""
    pool = (ds.train_images[split.train_indices], ds.train_labels[split.train_indices])
    val_loader = TensorBatchLoader(ds.train_images[split.val_indices], ds.train_labels[split.val_indices], 1000, device)
    images, labels, is_own = epoch_data(own, pool, cfg, 0)
    steps = len(labels) // cfg.batch_size
    if steps == 0:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than an epoch's {len(labels)} images")
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    teacher = copy.deepcopy(model).eval().requires_grad_(False) if cfg.finetune.distill else None
    extra_loss = distillation(teacher, cfg.finetune.distill) if teacher is not None else None
    log.info(
        f"each epoch: {int((~is_own).sum())} Fashion-MNIST replay + {int(is_own.sum())} own-train (oversampled) "
        f"images{f', distilled from the start model on replay (weight {cfg.finetune.distill:g})' if teacher else ''}"
    )
    precision = resolve_precision(cfg.precision, device)
    log.info(f"training in {precision}")
    val_acc = 0.0
    for epoch in range(cfg.epochs):
        t0 = time.time()
        if epoch:
            images, labels, is_own = epoch_data(own, pool, cfg, epoch)
        loader = TensorBatchLoader(images, labels, cfg.batch_size, device, shuffle=True, augment=cfg.augment,
                                   seed=cfg.seed, drop_last=True, marks=~is_own)  # fmt: skip
        loader.set_epoch(epoch)
        train_loss, train_acc = train_one_epoch(
            model, loader, optimizer, scheduler, cfg, device, epoch, extra_loss=extra_loss, precision=precision
        )
        train_seconds = time.time() - t0
        val_loss, val_acc, _ = evaluate(model, val_loader, device, cfg.tta_flip, False, precision)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
               "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - t0,
               "precision": precision, "images_per_s": steps * cfg.batch_size / train_seconds}  # fmt: skip
        log.epoch(row, improved=epoch == cfg.epochs - 1)
    return val_acc


def summarise(before: dict, after: dict, held: WardrobeItems, log: RunLog) -> dict:
    """Step 4: the paired before/after comparison on the held-out items (also per class) and on
    Fashion-MNIST, logged in a sentence each."""
    result = {name: compare(before[name], after[name]) for name in before}
    result["held_out"]["per_class"] = {
        fashion_mnist.CLASSES[c]: {
            "n": int(np.sum(held.labels == c)),
            "before": float(before["held_out"][held.labels == c].mean()),
            "after": float(after["held_out"][held.labels == c].mean()),
        }
        for c in np.unique(held.labels)
    }
    for name, title in (("held_out", "your held-out items"), ("fashion_mnist_test", "Fashion-MNIST test")):
        r = result[name]
        b, a = r["before"], r["after"]
        log.info(
            f"{title}: {b['accuracy']:.4f} [{b['ci95'][0]:.3f}, {b['ci95'][1]:.3f}] → "
            f"{a['accuracy']:.4f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] ({r['change_points']:+.2f} points, "
            f"n = {a['n']}; {r['fixed']} fixed, {r['broken']} broken, McNemar p = {r['mcnemar_p']:.3g})"
        )
    return result


def main(cfg: TrainConfig, run_dir: Path | None = None, data_dir: str | None = None) -> Path:
    """Fine-tune according to `cfg`; returns the run directory."""
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, os.cpu_count() or 1))
    torch.manual_seed(cfg.seed)
    started = time.time()
    base_path = resolve(cfg.finetune.base)
    model, base_cfg, _ = load_base(base_path)
    model = model.to(device)
    # The network is the base's; so is mirror TTA, which the export bakes in.
    cfg = dataclasses.replace(cfg, model=base_cfg.model, tta_flip=base_cfg.tta_flip)

    with progress.step("freezing the wardrobe: its export, checksum and held-out split"):
        wardrobe = freeze(cfg)
    snapshot, own, held = wardrobe.snapshot, wardrobe.own, wardrobe.held
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, wardrobe_sha256=snapshot.sha256, wardrobe_items=len(snapshot.items))
    )
    run_dir = Path(run_dir) if run_dir else Path(cfg.out_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    frozen = run_dir / "wardrobe-export.zip"
    move_into_place(snapshot.path, frozen)

    ds = fashion_mnist.load(data_dir or cfg.data.data_dir or None)
    split = stratified_split(ds.train_labels, cfg.data.val_size, cfg.data.split_seed)
    log = RunLog(run_dir)
    wardrobe_info = {
        "source": cfg.data.wardrobe, "export": frozen.name, "sha256": snapshot.sha256, "items": len(snapshot.items),
        "labelled": len(wardrobe.items), "own_train": len(own), "held_out": len(held), "held_out_ids": list(held.ids),
        "base": str(base_path), "base_sha256": sha256_file(base_path),
    }  # fmt: skip
    log.start(cfg, extra={"parameters": count_parameters(model), "device": str(device), "world_size": 1,
                          "dataset_sha256": ds.checksum, "dataset_source": str(ds.source),
                          "split_sha256": split.checksum, "source_commit": source_commit(),
                          "wardrobe": wardrobe_info})  # fmt: skip
    log.info(
        f"fine-tuning {base_path} on {frozen} (sha256 {snapshot.sha256[:12]}…, {len(snapshot.items)} items): "
        f"{len(wardrobe.items)} labelled → {len(own)} own-train, {len(held)} held-out (never trained on)"
    )

    before, issues = measure_start(model, wardrobe, ds, cfg, device, run_dir, log)
    val_acc = train(model, own, ds, split, cfg, device, log)
    save_checkpoint(  # as best.pt, so `wardrobe export RUN` finds it
        {"model": model.state_dict(), "config": dataclasses.asdict(cfg), "epoch": cfg.epochs, "val_acc": val_acc,
         "parameters": count_parameters(model)},
        run_dir / "best.pt",
    )  # fmt: skip
    result = summarise(before, measure(model, held, ds, device, cfg.tta_flip), held, log)
    summary = {
        "best_epoch": cfg.epochs,
        "best_val_acc": val_acc,
        "test_acc": result["fashion_mnist_test"]["after"]["accuracy"],
        "parameters": count_parameters(model),
        "wall_seconds": time.time() - started,
        "wardrobe": {k: v for k, v in wardrobe_info.items() if k != "held_out_ids"},
        "label_issues": len(issues),
        **result,
    }
    log.finish(summary)
    write_json(summary, run_dir / "finetune.json")
    return run_dir


def run_from_cli(config: Path, overrides: list[str], data_dir: Path | None = None) -> Path:
    cfg = load_config(config, overrides)
    if not cfg.is_finetune:
        raise ConfigError(f"{config}: not a fine-tuning config (set finetune.base, e.g. configs/finetune.toml)")
    if not cfg.data.wardrobe:
        raise ConfigError(
            f"{config}: this config fine-tunes (finetune.base = {cfg.finetune.base!r}); say on which "
            "wardrobe with --set data.wardrobe=<export zip | image folder | database URL>"
        )
    return main(cfg, data_dir=str(data_dir) if data_dir else None)
