"""The training loop on small real data: learning, early stopping, determinism, resume, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.checkpoint import load_checkpoint
from training.config import RESUMABLE_KEYS, load_config
from training.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
WARDROBE = [sys.executable, "-m", "wardrobe"]
TINY = [
    'model.arch="mlp"', "model.hidden=[32]", "data.train_subset=1000", "batch_size=100",
    "threads=1", "epochs=3",
]  # fmt: skip


def tiny(tmp_path: Path, *extra: str):
    return load_config(None, [*TINY, f'out_dir="{tmp_path}"', *extra])


def rows(run_dir: Path) -> list[dict]:
    """Per-epoch metrics without the wall time and speed, which legitimately differ between runs."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    timing = {"seconds", "images_per_s"}
    return [{k: v for k, v in json.loads(line).items() if k not in timing} for line in lines]


def test_loss_decreases_and_the_run_directory_is_complete(tmp_path):
    run = train_main(tiny(tmp_path, "epochs=4"))
    history = rows(run)
    assert len(history) == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] > 0.5
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "learning_curve.png", "summary.json"):
        assert (run / name).is_file(), name
    last = torch.load(run / "last.pt", weights_only=True)  # the safe unpickler must accept it
    assert {"model", "optimizer", "scheduler", "rng", "epoch"} <= set(last)
    assert last["epoch"] == 4
    summary = json.loads((run / "summary.json").read_text())
    assert 0.5 < summary["test_acc"] <= 1.0


def test_same_seed_gives_identical_metrics(tmp_path):
    a = train_main(tiny(tmp_path / "a", "epochs=2", "augment.erase_prob=0.3", "model.dropout=0.2"))
    b = train_main(tiny(tmp_path / "b", "epochs=2", "augment.erase_prob=0.3", "model.dropout=0.2"))
    assert rows(a) == rows(b)


def test_early_stopping_triggers_and_restores_the_best_epoch(tmp_path):
    cfg = tiny(tmp_path, "epochs=30", "patience=1", "data.train_subset=300", 'schedule.name="constant"', "optim.lr=0.3")
    run = train_main(cfg)
    history = rows(run)
    assert len(history) < 30, "early stopping never triggered"
    best = max(history, key=lambda r: r["val_acc"])
    assert history[-1]["epoch"] == best["epoch"] + 1  # stopped after `patience` epochs without progress
    saved = load_checkpoint(run / "best.pt")
    assert saved["epoch"] == best["epoch"]
    assert saved["val_acc"] == pytest.approx(best["val_acc"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == best["epoch"]


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path):
    settings = [*TINY, "epochs=4", "data.train_subset=3000", "model.hidden=[256]", "model.dropout=0.2"]
    reference = train_main(load_config(None, [*settings, f'out_dir="{tmp_path / "ref"}"']))

    args = [a for s in settings for a in ("--set", s)]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*WARDROBE, "train", "--config", os.devnull, *args, "--set", f'out_dir="{out}"'],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 240
    run_dir = None
    while time.time() < deadline and proc.poll() is None:
        runs = list(out.glob("*/last.pt"))
        if runs and len(rows(runs[0].parent)) >= 1:
            run_dir = runs[0].parent
            break
        time.sleep(0.05)
    assert run_dir is not None, "the training subprocess never finished its first epoch"
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9, in the middle of epoch 2
    proc.wait()
    assert load_checkpoint(run_dir / "last.pt")["epoch"] < 4

    # No --config: the run's own config.json. data.data_dir may change (here: to where the data already was).
    data_dir = json.loads((run_dir / "config.json").read_text())["dataset_source"]
    resumed = subprocess.run(
        [*WARDROBE, "train", "--resume", str(run_dir), "--set", f'data.data_dir="{data_dir}"'],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"with data.data_dir = '{data_dir}' (was '')" in resumed.stdout + resumed.stderr
    assert rows(run_dir) == rows(reference)
    ref_summary = json.loads((reference / "summary.json").read_text())
    assert json.loads((run_dir / "summary.json").read_text())["test_acc"] == ref_summary["test_acc"]


def test_resume_of_a_directory_without_a_run_is_a_clear_error(tmp_path, capsys):
    from wardrobe.cli import main

    assert main(["train", "--resume", str(tmp_path)]) == 1
    assert "not a run directory (no config.json)" in capsys.readouterr().err
    assert main(["train", "--config", os.devnull, "--resume", str(tmp_path)]) == 1  # as before: still accepted
    assert "not a run directory (no config.json)" in capsys.readouterr().err


def test_resume_refuses_a_set_that_would_change_the_run_naming_the_key(tmp_path, capsys):
    from wardrobe.cli import main

    run = train_main(tiny(tmp_path, "epochs=1"))
    assert main(["train", "--resume", str(run), "--set", "epochs=5", "--set", "threads=1"]) == 1
    err = capsys.readouterr().err
    assert "--set epochs=5 would change epochs from 1 to 5, but a resumed run keeps its own config" in err
    assert "only threads, data.data_dir may change" in err and "Traceback" not in err
    assert len(rows(run)) == 1  # nothing ran


def test_train_needs_a_config_or_a_run_to_resume(capsys):
    from wardrobe.cli import build_parser, main

    assert main(["train", "--set", "epochs=1"]) == 1
    assert "train needs --config configs/<name>.toml (or --resume RUN_DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(key in help_text for key in RESUMABLE_KEYS), help_text


def test_torchrun_trains_with_two_gloo_processes(tmp_path):
    out = tmp_path / "ddp"
    overrides = [*TINY, "epochs=1", f'out_dir="{out}"']
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "training.train", "--config", os.devnull, *[a for s in overrides for a in ("--set", s)]],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list(out.iterdir())
    assert len(runs) == 1, "only rank 0 writes a run directory"
    info = json.loads((runs[0] / "config.json").read_text())
    assert info["world_size"] == 2
    assert len(rows(runs[0])) == 1
    assert json.loads((runs[0] / "summary.json").read_text())["test_acc"] > 0.3


def test_a_batch_larger_than_the_training_set_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size 512 is larger than the 100 training images"):
        train_main(tiny(tmp_path, "data.train_subset=100", "batch_size=512"))


def test_the_long_recipe_runs_its_ema_cosine_and_erasing_paths_on_a_tiny_budget(tmp_path):
    """configs/cnn-long.toml as shipped (EMA weights, cosine schedule with warm-up, random
    erasing, flip TTA), shrunk to seconds: narrow stages, 400 images, 3 epochs."""
    cfg = load_config(
        REPO / "configs" / "cnn-long.toml",
        ["model.channels=[4,8,8]", "data.train_subset=400", "batch_size=100", "epochs=3", "threads=1",
         "schedule.warmup_epochs=1", f'out_dir="{tmp_path}"'],
    )  # fmt: skip
    assert cfg.ema_decay > 0 and cfg.schedule.name == "cosine" and cfg.augment.erase_prob > 0
    run = train_main(cfg)
    history = rows(run)
    assert len(history) == 3
    # cosine after one warm-up epoch: the peak learning rate, then half of it, then zero
    lrs = [row["lr"] for row in history]
    assert lrs[0] == pytest.approx(cfg.optim.lr)
    assert lrs[1] == pytest.approx(cfg.optim.lr / 2)
    assert lrs[2] == pytest.approx(0.0, abs=1e-9)

    last = load_checkpoint(run / "last.pt")
    assert last["ema"] is not None, "ema_decay > 0 must keep averaged weights"
    assert int(last["ema"]["n_averaged"]) == 3 * 4  # updated after every optimizer step
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert averaged.keys() == last["model"].keys()
    assert any(not torch.equal(averaged[k], last["model"][k]) for k in averaged if averaged[k].is_floating_point())
    # what is evaluated and saved as best is the averaged model
    assert load_checkpoint(run / "best.pt")["model"].keys() == averaged.keys()


def test_adamw_with_the_dataloader_path_learns(tmp_path):
    run = train_main(tiny(tmp_path, 'optim.name="adamw"', "optim.lr=0.01", 'data.loader="dataloader"',
                          "data.workers=1", "epochs=2"))  # fmt: skip
    history = rows(run)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] > 0.4  # chance is 0.1
    optimizer = load_checkpoint(run / "last.pt")["optimizer"]
    assert "exp_avg_sq" in next(iter(optimizer["state"].values())), "AdamW's second-moment state is missing"


def test_a_onecycle_schedule_too_short_to_have_two_phases_is_a_clear_error(tmp_path):
    from training.config import ConfigError
    from training.optim import build_scheduler

    cfg = load_config(None, ['schedule.name="onecycle"', "epochs=1"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match="needs at least 4 optimizer steps, got 2"):
        build_scheduler(optimizer, cfg, steps_per_epoch=2)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=4)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
