"""The course's lessons as measured facts: one thing changed at a time, several seeds, only
validation accuracy (the test split stays untouched). Two studies:

- `--study mlp`: the MLP with and without BatchNorm, He vs PyTorch's default init, dropout
  on/off and augmentation on/off, on a short schedule and a subset (where the MLP under-fits);
- `--study cnn`: the same levers plus weight decay and label smoothing on the CNN of
  `configs/cnn-fast.toml`, on the full 55,000-image training split for its 10 epochs.

    .venv/bin/python -m benchmarks.ablation --study mlp [--seeds 0 1 2] [--epochs 4] [--train-subset 20000]
    .venv/bin/python -m benchmarks.ablation --study cnn [--seeds 0 1] [--epochs 10] [--train-subset 0]

Writes benchmarks/results/ablation.json (mlp) or ablation-cnn.json (cnn) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from contract.files import write_json
from contract.metadata import source_commit
from training.config import load_config
from training.train import main as train

RESULTS = {
    "mlp": Path(__file__).resolve().parent / "results" / "ablation.json",
    "cnn": Path(__file__).resolve().parent / "results" / "ablation-cnn.json",
}
CNN_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cnn-fast.toml"

# Each variant changes one thing relative to the baseline (BN + He + dropout + augmentation).
MLP_VARIANTS = {
    "baseline (BatchNorm, He init, dropout 0.3, augmentation)": [],
    "without BatchNorm": ["model.batchnorm=false"],
    "PyTorch default init instead of He": ['model.init="default"'],
    "without dropout": ["model.dropout=0.0"],
    "without augmentation": ["augment.translate=0", "augment.hflip=false"],
}
CNN_VARIANTS = {
    "baseline (configs/cnn-fast.toml: BN, He, dropout 0.1, wd 5e-4, augmentation, smoothing 0.1)": [],
    "without BatchNorm": ["model.batchnorm=false"],
    "PyTorch default init instead of He": ['model.init="default"'],
    "without dropout": ["model.dropout=0.0"],
    "without weight decay": ["optim.weight_decay=0.0"],
    "without augmentation": ["augment.translate=0", "augment.hflip=false", "augment.erase_prob=0.0"],
    "without label smoothing": ["optim.label_smoothing=0.0"],
}


def mlp_overrides(epochs: int, subset: int) -> list[str]:
    return [
        'model.arch="mlp"', "model.hidden=[512, 256]", "model.dropout=0.3", "augment.translate=1",
        "augment.hflip=true", f"epochs={epochs}", f"data.train_subset={subset}", "batch_size=128",
        "optim.lr=0.05", "tta_flip=false", "threads=1",
    ]  # fmt: skip


def cnn_overrides(epochs: int, subset: int) -> list[str]:
    return [f"epochs={epochs}", f"data.train_subset={subset}", "tta_flip=false", "threads=1"]


def run_variant(config: Path | None, overrides: list[str], seed: int, out_dir: str) -> float:
    cfg = load_config(config, [*overrides, f"seed={seed}", f'out_dir="{out_dir}"', f'name="ablation-s{seed}"'])
    run_dir = train(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["val_acc"]  # the schedule's end, not the best epoch: no selection on noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (mlp), 0 1 (cnn)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 4 (mlp), 10 (cnn)")
    parser.add_argument("--train-subset", type=int, default=None, help="default: 20000 (mlp), 0 = all (cnn)")
    args = parser.parse_args()
    mlp = args.study == "mlp"
    seeds = args.seeds or ([0, 1, 2] if mlp else [0, 1])
    epochs = args.epochs or (4 if mlp else 10)
    subset = args.train_subset if args.train_subset is not None else (20000 if mlp else 0)
    config, variants = (None, MLP_VARIANTS) if mlp else (CNN_CONFIG, CNN_VARIANTS)
    base = mlp_overrides(epochs, subset) if mlp else cnn_overrides(epochs, subset)

    out = RESULTS[args.study]
    command = (
        f"python -m benchmarks.ablation --study {args.study} --seeds {' '.join(map(str, seeds))} "
        f"--epochs {epochs} --train-subset {subset}"
    )
    done = previous_runs(out, epochs, subset)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        # seed-major: a stopped study still holds one whole sweep of the levers; a rerun of the
        # same command resumes, skipping the (variant, seed) pairs already in the results file
        for seed in seeds:
            for variant, extra in variants.items():
                if seed not in done.setdefault(variant, {}):
                    done[variant][seed] = run_variant(config, base + extra, seed, tmp)
                    write_json(results(command, result_rows(variants, done, epochs, subset)), out)
    rows = result_rows(variants, done, epochs, subset)
    write_json(results(command, rows), out)
    print(f"\n{'variant':60s} {'val acc (mean ± std)':>22s}")
    for row in rows:
        print(f"{row['variant']:60s} {row['val_acc_mean']:.4f} ± {row['val_acc_std']:.4f}  seeds {row['seeds']}")
    print(f"wrote {out} in {time.time() - started:.0f}s ({command})")


def results(command: str, rows: list[dict]) -> dict:
    """The results file: the rows, the command that made them and the commit they ran on."""
    return {"command": command, "commit": source_commit(), "rows": rows}


def result_rows(variants: dict, done: dict[str, dict[int, float]], epochs: int, subset: int) -> list[dict]:
    """One row per variant with at least one finished seed: accuracies, mean and spread."""
    rows = []
    for variant, extra in variants.items():
        accs = done.get(variant, {})
        if not accs:
            continue
        values = [accs[s] for s in sorted(accs)]
        rows.append({
            "variant": variant, "overrides": extra, "seeds": sorted(accs), "val_accs": values,
            "val_acc_mean": statistics.mean(values),
            "val_acc_std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "epochs": epochs, "train_subset": subset,
        })  # fmt: skip
    return rows


def previous_runs(path: Path, epochs: int, subset: int) -> dict[str, dict[int, float]]:
    """The finished (variant, seed) runs of the same schedule in an earlier results file."""
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}: not valid JSON ({exc}); move it away to start the study afresh") from None
    rows = saved["rows"] if isinstance(saved, dict) else saved  # a bare list: files written before the command was
    return {
        row["variant"]: dict(zip(row["seeds"], row["val_accs"], strict=True))
        for row in rows
        if row.get("epochs") == epochs and row.get("train_subset") == subset
    }


if __name__ == "__main__":
    main()
