"""Architectures, He initialisation and BatchNorm folding."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from training.config import load_config
from training.export import fold_batchnorm
from training.models import MLP, ModelConfig, build_model, count_parameters

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_he_init_matches_sqrt_two_over_fan_in():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="mlp", hidden=(1024, 512)))
    hidden = [m for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    for layer in hidden:
        expected = math.sqrt(2.0 / layer.in_features)
        assert layer.weight.std().item() == pytest.approx(expected, rel=0.03)
    convs = [m for m in build_model(ModelConfig(arch="cnn")).modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[1:]:
        fan_in = conv.in_channels * 9
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.1)


def test_default_init_is_selectable_and_differs_from_he():
    torch.manual_seed(0)
    layer = build_model(ModelConfig(arch="mlp", init="default")).net[2]
    assert layer.weight.std().item() < 0.7 * math.sqrt(2.0 / 784)  # PyTorch's kaiming_uniform(a=√5)


def test_he_init_zeroes_biases():
    model = build_model(ModelConfig(arch="mlp", batchnorm=False))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert torch.count_nonzero(m.bias) == 0


def test_mlp_blocks_are_linear_batchnorm_relu_dropout():
    model = MLP(ModelConfig(arch="mlp", hidden=(64,), dropout=0.3))
    kinds = [type(m).__name__ for m in model.net]
    assert kinds == ["Normalize", "Flatten", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]


@pytest.mark.parametrize("name", ["cnn", "cnn-fast"])
def test_shipped_cnn_recipes_stay_under_a_million_parameters(name):
    cfg = load_config(CONFIGS / f"{name}.toml")
    assert count_parameters(build_model(cfg.model)) < 1_000_000


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_folding_batchnorm_keeps_the_function(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, hidden=(64,), channels=(8, 16), convs_per_stage=1))
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.rand(32, 1, 28, 28))  # non-trivial running statistics
    model.eval()
    folded = fold_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
