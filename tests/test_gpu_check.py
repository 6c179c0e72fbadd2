"""benchmarks.gpu_check: its dry mode runs every step on the CPU, so the GPU check cannot rot unseen."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import DRY, GPU, GpuCheck, choose_recipe, guarded
from contract.runtime import load_model
from training.fashion_mnist import locate
from training.precision import cpu_has_bf16

REPO = Path(__file__).resolve().parents[1]
STEPS = ["environment", "ddp", "train", "export", "inference", "serving"]
PARTS = ["onnxruntime_cuda", "onnxruntime_cpu", "torch_eager_fp32", "torch_eager_bf16_channels_last", "torch_compile"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, dict]:
    """One real dry run of the command, as `make test` runs it."""
    out = tmp_path_factory.mktemp("gpu-check")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out), "--dry-run"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done, out, json.loads((out / "gpu.json").read_text())


@pytest.mark.slow
def test_dry_run_reports_every_step_and_part_as_ok_or_skipped_with_a_reason(dry_run):
    _, out, results = dry_run
    assert results["mode"] == "dry" and results["complete"] and results["failed"] == []
    assert list(results["steps"]) == STEPS
    assert list(results["steps"]["inference"]["parts"]) == PARTS
    records = {**results["steps"], **results["steps"]["inference"]["parts"]}
    for name, record in records.items():
        assert record["status"] in ("ok", "skipped"), (name, record)
        assert record["status"] == "ok" or record["reason"], name
        assert record["seconds"] >= 0, name
    log = (out / "gpu_check.log").read_text()
    assert all(f"== {name}: " in log for name in STEPS)


@pytest.mark.slow
def test_dry_run_trains_through_ddp_and_the_training_loop_on_the_cpu(dry_run):
    _, out, results = dry_run
    ddp = results["steps"]["ddp"]
    assert (ddp["backend"], ddp["world_size"], ddp["ddp_train_steps"]) == ("gloo", 1, 1)
    train = results["steps"]["train"]
    assert train["recipe"] == "configs/cnn-long.toml" and train["epochs_run"] == 1
    # channels_last is checked wherever the model is a CNN; bf16 autocast where the CPU has native bf16
    dtype = "bfloat16" if cpu_has_bf16() else "float32"
    assert train["precision"] == {"device": "cpu", "input_channels_last": True, "weight_channels_last": True,
                                  "output_dtype": dtype}  # fmt: skip
    assert train["per_epoch"][0]["images_per_s"] > 0 and 0 <= train["test_acc"] <= 1
    assert "time_to_val_acc_0.94" in train  # None: a tiny model on 512 images does not get there
    copied = sorted(p.name for p in (out / "run").iterdir())
    assert copied == ["best.pt", "config.json", "metrics.jsonl", "summary.json"]


@pytest.mark.slow
def test_dry_run_exports_with_parity_and_times_every_inference_path(dry_run):
    _, out, results = dry_run
    export = results["steps"]["export"]
    assert export["parity_device"] == "cpu" and export["max_abs_logit_diff"] <= 1e-3
    assert load_model(out / export["model"], device="cpu").info.providers == ("CPUExecutionProvider",)
    parts = results["steps"]["inference"]["parts"]
    assert parts["onnxruntime_cuda"]["reason"] == "dry mode: no CUDA device"
    assert parts["onnxruntime_cpu"]["providers"][0] == "CPUExecutionProvider"
    assert parts["torch_compile"]["compile_backend"] == "eager"
    for name in PARTS[1:]:
        batches = parts[name]["batches"]
        assert list(batches) == ["1", "64"], name
        for row in batches.values():
            assert row["images_per_s"] > 0 and row["calls"] >= 2 and row["p50_ms"] <= row["p99_ms"], (name, row)
    assert results["steps"]["serving"]["reason"].startswith("dry mode: serving is measured on a GPU only")


def test_the_long_recipe_gives_way_to_the_shipped_one_when_it_would_overrun_the_budget():
    assert choose_recipe(GPU, epoch_s=3.0, budget_s=200)["recipe"].name == "cnn-long.toml"  # 60 x 3 s
    shipped = choose_recipe(GPU, epoch_s=4.0, budget_s=200)  # cnn-long 240 s; cnn.toml's 40 epochs 160 s
    assert (shipped["recipe"].name, shipped["extra"]) == ("cnn.toml", [])
    assert "needs about 240 s" in shipped["why"]
    cut = choose_recipe(GPU, epoch_s=40.0, budget_s=200)
    assert (cut["recipe"].name, cut["extra"]) == ("cnn.toml", ["epochs=5"])


def test_a_failed_step_is_recorded_with_its_error_and_the_next_step_says_why_it_cannot_run(tmp_path):
    plan = dataclasses.replace(DRY, recipe=tmp_path / "missing.toml")
    check = GpuCheck(plan, tmp_path, tmp_path / "work", locate(download=False), budget_s=60)
    train = guarded(check.train)
    assert train["status"] == "failed"
    assert train["error"].endswith("missing.toml: config file not found")
    assert guarded(check.export)["reason"] == "no trained run (the train step did not finish)"


def test_a_folder_without_the_dataset_is_named_before_anything_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path / "out"), "--dry-run",
         "--data-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{tmp_path}: no Fashion-MNIST file train-images-idx3-ubyte.gz" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out" / "gpu.json").exists()


def test_the_gpu_path_imports_without_bentoml_cleanlab_or_scikit_learn():
    """A GPU machine's image may hold torch, onnx, pillow, scipy and the CPU onnxruntime but not our
    serving or data-cleaning stack; the check must still start (serving then says what is missing)."""
    code = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"bentoml", "sklearn", "cleanlab", "pynvml"}:
            raise ImportError(f"{name} is absent here")
sys.meta_path.insert(0, Absent())
import benchmarks.ddp_step, benchmarks.gpu_check, benchmarks.gpu_inference, benchmarks.gpu_serving
import contract.runtime, training.export, training.train
print("imported")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr[-2000:]
