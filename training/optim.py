"""The optimizer and the learning-rate schedule a training config describes, for training from
scratch and fine-tuning alike."""

from __future__ import annotations

import torch
from torch import nn

from training.config import ConfigError, TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay only conv/linear weights: L2 on BatchNorm scales and biases only fights normalisation."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = param_groups(model, o.weight_decay)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas)


def build_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    s = cfg.schedule
    if s.name == "onecycle":
        # OneCycleLR divides by each phase's length in steps: both phases need two or more
        if total < 4:
            raise ConfigError(
                f"schedule.name 'onecycle' needs at least 4 optimizer steps, got {total} "
                f"({cfg.epochs} epoch(s) × {steps_per_epoch} batch(es)); train longer or use 'constant'"
            )
        pct = min(max(s.warmup_epochs / cfg.epochs, 0.01, 2 / total), 0.5)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.optim.lr, total_steps=total, pct_start=pct)
    if s.name == "cosine":
        warmup = max(1, round(s.warmup_epochs * steps_per_epoch))
        return torch.optim.lr_scheduler.SequentialLR(
            optimizer,
            [
                torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup),
                torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup)),
            ],
            milestones=[warmup],
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
