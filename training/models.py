"""The two architectures: an MLP and a small VGG-style CNN, both with input
normalisation inside the model so the exported graph takes raw [0, 1] pixels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Mean and std of the 60k training pixels (scaled to [0, 1]); fixed so that the
# exported graph does not depend on which split a run used.
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530
ARCHITECTURES = ("mlp", "cnn", "resnet")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "cnn"
    """"mlp", "cnn" (VGG-style stages) or "resnet" (a stem at 28×28, then residual stages)."""
    hidden: tuple[int, ...] = (1024, 512)
    """MLP hidden layer widths."""
    channels: tuple[int, ...] = (32, 64, 128)
    """CNN stage widths; each stage is `convs_per_stage` 3×3 convs, then 2×2 max-pooling."""
    convs_per_stage: int = 2
    """Conv → BN → ReLU blocks per CNN stage."""
    stage_convs: tuple[int, ...] = ()
    """Conv blocks of each CNN stage, one number per stage (overrides `convs_per_stage`); for
    "resnet", the residual blocks (two convs each) after each stage's first conv. A conv at
    28×28 costs 16× one at 7×7, so depth is cheapest late (measured: `benchmarks/arch_cost.py`)."""
    dropout: float = 0.2
    """Dropout probability after each MLP block and before the CNN head (0 = off)."""
    batchnorm: bool = True
    """BatchNorm after every hidden linear/conv layer."""
    init: str = "he"
    """"he" (Kaiming normal, fan-in, zero bias) or "default" (PyTorch's own)."""

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"model.arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.init not in ("he", "default"):
            raise ValueError(f"model.init must be 'he' or 'default', got {self.init!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.hidden or any(h <= 0 for h in self.hidden):
            raise ValueError(f"model.hidden must be positive widths, got {self.hidden!r}")
        if not self.channels or any(c <= 0 for c in self.channels) or len(self.channels) > 3:
            raise ValueError(f"model.channels must be 1 to 3 positive widths, got {self.channels!r}")
        if self.convs_per_stage < 1:
            raise ValueError(f"model.convs_per_stage must be >= 1, got {self.convs_per_stage!r}")
        least = 0 if self.arch == "resnet" else 1
        if self.stage_convs and (len(self.stage_convs) != len(self.channels) or min(self.stage_convs) < least):
            raise ValueError(
                f"model.stage_convs must give >= {least} blocks for each of the {len(self.channels)} stages, "
                f"got {self.stage_convs!r}"
            )

    @property
    def convs(self) -> tuple[int, ...]:
        """Conv blocks per CNN stage, resolved."""
        return self.stage_convs or (self.convs_per_stage,) * len(self.channels)


class Normalize(nn.Module):
    """(x - mean) / std, part of the graph so callers always feed pixel / 255."""

    def __init__(self, mean: float = FMNIST_MEAN, std: float = FMNIST_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [Normalize(), nn.Flatten()]
        width = 28 * 28
        for h in cfg.hidden:
            layers.append(nn.Linear(width, h, bias=not cfg.batchnorm))
            if cfg.batchnorm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU(inplace=True))
            if cfg.dropout:
                layers.append(nn.Dropout(cfg.dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def conv_block(c_in: int, c_out: int, batchnorm: bool) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batchnorm)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)] if batchnorm else [conv, nn.ReLU(inplace=True)]


class CNN(nn.Module):
    """VGG-style stages (28 → 14 → 7 → 3), global average pooling and a linear head."""

    def __init__(self, cfg: ModelConfig, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [Normalize()]
        c_in = 1
        for c_out, n_convs in zip(cfg.channels, cfg.convs, strict=True):
            for _ in range(n_convs):
                layers += conv_block(c_in, c_out, cfg.batchnorm)
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity(),
            nn.Linear(c_in, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResidualBlock(nn.Module):
    """Two 3×3 conv → BN with an identity shortcut (He et al. 2016); the body is a Sequential so the
    exporter folds its BatchNorms like any other."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            *conv_block(channels, channels, batchnorm=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        # Each block starts as the identity ("zero-init residual", Goyal et al. 2017): deep nets
        # then train like shallow ones at first, and tolerate a large learning rate.
        nn.init.zeros_(self.body[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class ResNet(nn.Module):
    """One conv at 28×28 (one input channel makes it cheap), then stages at 14×14 and 7×7, where a
    conv costs 1/4 and 1/16 as much: each is max-pooling, a widening conv and residual blocks."""

    def __init__(self, cfg: ModelConfig, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [Normalize(), *conv_block(1, cfg.channels[0], batchnorm=True)]
        c_in = cfg.channels[0]
        for i, (c_out, n_blocks) in enumerate(zip(cfg.channels, cfg.convs, strict=True)):
            if i > 0:
                layers += [nn.MaxPool2d(2), *conv_block(c_in, c_out, batchnorm=True)]
                c_in = c_out
            layers += [ResidualBlock(c_out) for _ in range(n_blocks)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity(),
            nn.Linear(c_in, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def init_weights(model: nn.Module, scheme: str) -> None:
    """He (Kaiming) normal init, fan-in mode, for every ReLU-fed layer; biases zero.
    The last linear layer feeds softmax, not ReLU, so it gets the linear gain."""
    if scheme == "default":
        return
    linears = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for m in linears:
        last = m is linears[-1]
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear" if last else "relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(cfg: ModelConfig, num_classes: int = 10) -> nn.Module:
    model = {"mlp": MLP, "cnn": CNN, "resnet": ResNet}[cfg.arch](cfg, num_classes)
    init_weights(model, cfg.init)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
