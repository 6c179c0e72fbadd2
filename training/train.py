"""Train an MLP or CNN on Fashion-MNIST.

Reads top to bottom like torchvision's reference script: `train_one_epoch`,
`evaluate`, `load_data`, `main`, `get_args_parser`. Runs alone or under
`torchrun --nproc_per_node=N -m training.train --config ...` (DDP).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from contract.metadata import source_commit
from contract.split import stratified_split
from training import fashion_mnist, progress
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import RESUMABLE_KEYS, ConfigError, TrainConfig, config_from_dict, load_config, resume_config
from training.data import ArrayDataset, TensorBatchLoader, standard_loader
from training.distributed import DistInfo, all_reduce_sum, cleanup, init_distributed
from training.models import build_model, count_parameters
from training.optim import build_optimizer, build_scheduler
from training.precision import autocast, resolve_precision
from training.run_log import RunLog


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device = 'cuda' but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def forward(model: nn.Module, x: torch.Tensor, tta_flip: bool) -> torch.Tensor:
    logits = model(x)
    if tta_flip:  # garments are left-right symmetric enough that the mirror is a second opinion
        logits = (logits + model(x.flip(-1))) / 2
    return logits


def set_train_mode(model: nn.Module, freeze_batchnorm: bool) -> None:
    """Training mode, but with BatchNorm on its stored statistics when frozen (when fine-tuning,
    a few hundred photos in each batch could drag them away from Fashion-MNIST's)."""
    model.train()
    if freeze_batchnorm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def train_one_epoch(
    model, loader, optimizer, scheduler, cfg: TrainConfig, device, epoch: int, *,
    ema=None, dist_info: DistInfo | None = None, extra_loss=None, precision: str = "fp32",
):  # fmt: skip
    """One pass over `loader`, for training from scratch and fine-tuning alike; returns (mean loss,
    accuracy). A loader that also yields a per-image mark (fine-tuning: which images are replay)
    hands it to `extra_loss(x, logits, mark)`, whose value is added to the cross-entropy.
    `precision` "bf16" runs the forward pass under bfloat16 autocast (training.precision)."""
    dist_info = dist_info or DistInfo()
    set_train_mode(model, cfg.finetune.freeze_batchnorm)
    loss_sum = correct = seen = 0.0
    bar = progress.bar(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not dist_info.is_main)
    for x, y, *mark in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if cfg.model.arch != "mlp":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits = model(x)
        # The loss in fp32, as autocast would do it; the logits' bf16 rounding is all it sees.
        logits = logits.float()
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.optim.label_smoothing)
        if extra_loss is not None:
            with autocast(device, precision):
                loss = loss + extra_loss(x, logits, mark[0] if mark else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model.module if isinstance(model, DistributedDataParallel) else model)
        n = len(y)
        loss_sum += loss.item() * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}", refresh=False)
    loss_sum, correct, seen = all_reduce_sum([loss_sum, correct, seen], device, dist_info)
    return loss_sum / seen, correct / seen


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, device: torch.device, tta_flip: bool, channels_last: bool, precision: str = "fp32"
):
    """Mean loss (no smoothing) and accuracy of `model` over a loader; returns (loss, acc, logits)."""
    model.eval()
    loss_sum, correct, seen, all_logits = 0.0, 0, 0, []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits = forward(model, x, tta_flip).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        all_logits.append(logits.cpu())
    return loss_sum / seen, correct / seen, torch.cat(all_logits)


def load_data(cfg: TrainConfig, device: torch.device, dist_info: DistInfo, data_dir: str | None):
    ds = fashion_mnist.load(data_dir or cfg.data.data_dir or None)
    split = stratified_split(ds.train_labels, cfg.data.val_size, cfg.data.split_seed)
    train_idx = split.train_indices
    if cfg.data.train_subset and cfg.data.train_subset < len(train_idx):
        keep = stratified_split(ds.train_labels[train_idx], cfg.data.train_subset, cfg.data.split_seed).val_indices
        train_idx = train_idx[keep]
    x_train, y_train = ds.train_images[train_idx], ds.train_labels[train_idx]
    x_val, y_val = ds.train_images[split.val_indices], ds.train_labels[split.val_indices]
    per_rank_batch = max(1, cfg.batch_size // dist_info.world_size)
    if cfg.data.loader == "tensor":
        train_loader = TensorBatchLoader(
            x_train,
            y_train,
            per_rank_batch,
            device,
            shuffle=True,
            augment=cfg.augment,
            seed=cfg.seed,
            drop_last=True,
            rank=dist_info.rank,
            world_size=dist_info.world_size,
        )
    else:
        from training.presets import TrainPreset

        if dist_info.enabled:
            raise RuntimeError("data.loader = 'dataloader' is single-process; use 'tensor' under torchrun")
        train_loader = standard_loader(
            ArrayDataset(x_train, y_train, TrainPreset(cfg.augment)),
            per_rank_batch,
            shuffle=True,
            workers=cfg.data.workers,
            seed=cfg.seed,
        )
    if len(train_loader) == 0:
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the {len(train_idx)} training images "
            f"(per process: {per_rank_batch}); lower batch_size or raise data.train_subset"
        )
    val_loader = TensorBatchLoader(x_val, y_val, 1000, device)
    test_loader = TensorBatchLoader(ds.test_images, ds.test_labels, 1000, device)
    return ds, split, len(train_idx), train_loader, val_loader, test_loader


def main(cfg: TrainConfig, run_dir: Path | None = None, resume: bool = False, data_dir: str | None = None) -> Path:
    """Train according to `cfg`; returns the run directory."""
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device.type)
    try:
        return _train(cfg, device, dist_info, run_dir, resume, data_dir)
    finally:
        cleanup(dist_info)


@dataclass
class Training:
    """What a run trains: the model (inside DDP under torchrun), the module itself, its weight average,
    the optimizer and the schedule."""

    model: nn.Module
    raw_model: nn.Module
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    parameters: int
    channels_last: bool

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved as best.pt: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.raw_model


@dataclass
class Standing:
    """Where a run stands: epochs done, the best validation accuracy and its epoch, epochs since then."""

    epochs_done: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    stale: int = 0

    def record(self, epoch: int, val_acc: float) -> bool:
        """Count epoch `epoch` (0-based) with `val_acc`; True when it is the best so far."""
        improved = val_acc > self.best_acc
        if improved:
            self.best_acc, self.best_epoch, self.stale = val_acc, epoch + 1, 0
        else:
            self.stale += 1
        return improved


def build_training(cfg: TrainConfig, device: torch.device, dist_info: DistInfo, steps_per_epoch: int) -> Training:
    model = build_model(cfg.model).to(device)
    channels_last = cfg.model.arch != "mlp"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    n_params = count_parameters(model)
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        if cfg.ema_decay
        else None
    )
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    if dist_info.enabled:
        model = DistributedDataParallel(model)
    raw_model = model.module if isinstance(model, DistributedDataParallel) else model
    return Training(model, raw_model, ema, optimizer, scheduler, n_params, channels_last)


def restore(training: Training, cfg: TrainConfig, run_dir: Path, log: RunLog) -> Standing:
    """Load last.pt into `training` (weights, average, optimizer, schedule, RNG); where the run stood."""
    state = load_checkpoint(run_dir / "last.pt")
    training.raw_model.load_state_dict(state["model"])
    if training.ema is not None and state.get("ema") is not None:
        training.ema.load_state_dict(state["ema"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    standing = Standing(state["epoch"], state["best_val_acc"], state["best_epoch"], state["stale_epochs"])
    log.truncate_metrics(standing.epochs_done)
    saved = config_from_dict(state["config"])
    changed = [f"{key} = {_value(cfg, key)!r} (was {_value(saved, key)!r})"
               for key in RESUMABLE_KEYS if _value(cfg, key) != _value(saved, key)]  # fmt: skip
    log.info(f"resuming {run_dir} after epoch {standing.epochs_done}" + "".join(f", with {c}" for c in changed))
    return standing


def _value(cfg: TrainConfig, key: str):
    return functools.reduce(getattr, key.split("."), cfg)


def save_checkpoints(
    training: Training, cfg: TrainConfig, standing: Standing, epoch: int, val_acc: float, improved: bool, run_dir: Path
) -> None:
    """best.pt (the evaluated weights) when the epoch improved, and last.pt (everything a resume needs)."""
    config = dataclasses.asdict(cfg)
    if improved:
        weights = {"model": training.eval_model.state_dict(), "config": config, "epoch": epoch + 1}
        save_checkpoint({**weights, "val_acc": val_acc, "parameters": training.parameters}, run_dir / "best.pt")
    save_checkpoint(
        {
            "model": training.raw_model.state_dict(),
            "ema": training.ema.state_dict() if training.ema is not None else None,
            "optimizer": training.optimizer.state_dict(),
            "scheduler": training.scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "epoch": epoch + 1,
            "stale_epochs": standing.stale,
            "best_val_acc": standing.best_acc,
            "best_epoch": standing.best_epoch,
            "config": config,
        },
        run_dir / "last.pt",
    )


def fit_epoch(training: Training, cfg: TrainConfig, train_loader, val_loader, epoch: int, device: torch.device,
              dist_info: DistInfo, precision: str, evaluate_on) -> dict:  # fmt: skip
    """Train one epoch, then validate; the epoch's row of metrics.jsonl."""
    t0 = time.time()
    if isinstance(train_loader, TensorBatchLoader):  # reshuffle and re-seed augmentation per epoch
        train_loader.set_epoch(epoch)
    train_loss, train_acc = train_one_epoch(
        training.model, train_loader, training.optimizer, training.scheduler, cfg, device, epoch,
        ema=training.ema, dist_info=dist_info, precision=precision,
    )  # fmt: skip
    train_seconds = time.time() - t0
    val_loss, val_acc, _ = evaluate_on(training.eval_model, val_loader)
    return {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lr": training.optimizer.param_groups[0]["lr"],
        "seconds": time.time() - t0,
        "precision": precision,
        "images_per_s": len(train_loader) * cfg.batch_size / train_seconds,
    }


def _train(cfg, device, dist_info, run_dir, resume, data_dir) -> Path:
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // dist_info.world_size))
    torch.manual_seed(cfg.seed)
    started = time.time()
    ds, split, n_train, train_loader, val_loader, test_loader = load_data(cfg, device, dist_info, data_dir)
    precision = resolve_precision(cfg.precision, device)
    training = build_training(cfg, device, dist_info, len(train_loader))
    if run_dir is None:
        run_dir = Path(cfg.out_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"
    log = RunLog(run_dir, enabled=dist_info.is_main)
    if resume:
        standing = restore(training, cfg, run_dir, log)
    else:
        standing = Standing()
        record = {"parameters": training.parameters, "device": str(device), "precision": precision,
                  "world_size": dist_info.world_size, "dataset_sha256": ds.checksum, "dataset_source": str(ds.source),
                  "split_sha256": split.checksum, "train_images": n_train, "val_images": len(split.val_indices),
                  "source_commit": source_commit()}  # fmt: skip
        log.start(cfg, extra=record)
    log.info(
        f"{cfg.model.arch.upper()} with {training.parameters:,} parameters on {device} in {precision} "
        f"(world size {dist_info.world_size}); {n_train} train / {len(split.val_indices)} val images"
    )
    evaluate_on = functools.partial(
        evaluate, device=device, tta_flip=cfg.tta_flip, channels_last=training.channels_last, precision=precision
    )
    for epoch in range(standing.epochs_done, cfg.epochs):
        row = fit_epoch(training, cfg, train_loader, val_loader, epoch, device, dist_info, precision, evaluate_on)
        improved = standing.record(epoch, row["val_acc"])
        log.epoch(row, improved)
        if dist_info.is_main:
            save_checkpoints(training, cfg, standing, epoch, row["val_acc"], improved, run_dir)
        if cfg.patience and standing.stale >= cfg.patience:
            log.info(
                f"early stopping: no better validation accuracy for {standing.stale} epochs; "
                f"restoring epoch {standing.best_epoch} ({standing.best_acc:.4f})"
            )
            break

    # Final evaluation, once, on the best weights: the only time the test split is touched.
    best = load_checkpoint(run_dir / "best.pt") if dist_info.is_main else None
    if best is not None:
        training.eval_model.load_state_dict(best["model"])
        _, test_acc, _ = evaluate_on(training.eval_model, test_loader)
        summary = {"best_epoch": standing.best_epoch, "best_val_acc": standing.best_acc, "test_acc": test_acc,
                   "parameters": training.parameters, "wall_seconds": time.time() - started}  # fmt: skip
        log.finish(summary)
    return run_dir


def run_from_cli(
    config: Path | None, overrides: list[str], resume: Path | None = None, data_dir: Path | None = None
) -> Path:
    """`wardrobe train`: a new run from `config` and `overrides`, or, with `resume`, the run in that
    directory continued on its own config.json (which `config` and `overrides` may change only in
    config.RESUMABLE_KEYS: anything else is refused, naming the key)."""
    if resume is not None:
        saved = resume / "config.json"
        if not saved.is_file():
            raise FileNotFoundError(f"{resume}: not a run directory (no config.json)")
        cfg = resume_config(json.loads(saved.read_text())["config"], resume, config, overrides)
        if cfg.is_finetune:
            raise ValueError(f"{resume}: a fine-tuning run is short; start it again instead of resuming")
        return main(cfg, run_dir=resume, resume=True, data_dir=str(data_dir) if data_dir else None)
    if config is None:
        raise ConfigError("train needs --config configs/<name>.toml (or --resume RUN_DIR to continue a run)")
    cfg = load_config(config, overrides)
    if cfg.is_finetune:
        raise ConfigError(f"{config}: this config fine-tunes (finetune.base is set); run it with `wardrobe train`")
    return main(cfg, data_dir=str(data_dir) if data_dir else None)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train on Fashion-MNIST (also under torchrun)")
    parser.add_argument("--config", type=Path, help="configs/<name>.toml (not needed with --resume)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--resume", type=Path, help="run directory to continue")
    parser.add_argument("--data-dir", type=Path)
    return parser


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    try:
        run_from_cli(args.config, args.set, args.resume, args.data_dir)
    except (ValueError, OSError, RuntimeError) as exc:
        if os.environ.get("WARDROBE_DEBUG"):
            raise
        sys.exit(f"training.train: error: {exc}")
