"""bfloat16 autocast on CPU where the CPU has it: detection, the setting, and a run that records it."""

from __future__ import annotations

import json

import pytest
import torch

from training.config import ConfigError, load_config
from training.precision import autocast, cpu_has_bf16, resolve_precision
from training.train import main as train_main

CPU = torch.device("cpu")
SMALL_CNN = [
    'model.arch="resnet"', "model.channels=[8,16]", "model.stage_convs=[0,1]", "data.train_subset=2000",
    "batch_size=100", "threads=1", "epochs=3", "schedule.warmup_epochs=0.5",
]  # fmt: skip


def test_auto_picks_bf16_exactly_where_the_cpu_has_native_bf16():
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_bf16() else "fp32")


def test_fp32_setting_turns_bf16_off():
    assert resolve_precision("fp32", CPU) == "fp32"
    with autocast(CPU, "fp32"):
        assert torch.nn.Linear(4, 4)(torch.rand(2, 4)).dtype == torch.float32


def test_unknown_precision_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="precision must be one of .* got 'fp16'"):
        load_config(None, ['precision="fp16"'])


@pytest.mark.skipif(cpu_has_bf16(), reason="this CPU has bf16, so 'bf16' is accepted")
def test_bf16_on_a_cpu_without_it_is_an_error():
    with pytest.raises(ValueError, match="no native bfloat16"):
        resolve_precision("bf16", CPU)


def test_autocast_runs_matmuls_in_bf16_and_keeps_batchnorm_fp32():
    if not cpu_has_bf16():
        pytest.skip("no native bf16 on this CPU")
    conv, bn = torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)
    with autocast(CPU, "bf16"):
        y = conv(torch.rand(2, 1, 8, 8))
        assert y.dtype == torch.bfloat16
        assert bn(y.float()).dtype == torch.float32


def test_a_small_run_records_its_precision_and_images_per_second_and_still_learns(tmp_path):
    run = train_main(load_config(None, [*SMALL_CNN, f'out_dir="{tmp_path}"']))
    expected = "bf16" if cpu_has_bf16() else "fp32"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["precision"] for r in rows] == [expected] * 3
    assert all(r["images_per_s"] > 0 for r in rows)
    assert json.loads((run / "config.json").read_text())["precision"] == expected
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert json.loads((run / "summary.json").read_text())["test_acc"] > 0.3  # chance is 0.1
