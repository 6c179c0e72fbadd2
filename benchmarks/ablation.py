"""The course's lessons as measured facts: the MLP with and without BatchNorm, He vs
PyTorch's default init, dropout on/off and augmentation on/off, three seeds each, on a
short schedule. Only validation accuracy is used (the test split stays untouched).

    .venv/bin/python -m benchmarks.ablation [--seeds 0 1 2] [--epochs 4] [--train-subset 20000]

Writes benchmarks/results/ablation.json (read by the report) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from training.atomic import write_json
from training.config import load_config
from training.train import main as train

RESULTS = Path(__file__).resolve().parent / "results" / "ablation.json"

# Each variant changes one thing relative to the baseline (BN + He + dropout + augmentation).
VARIANTS = {
    "baseline (BatchNorm, He init, dropout 0.3, augmentation)": [],
    "without BatchNorm": ["model.batchnorm=false"],
    "PyTorch default init instead of He": ['model.init="default"'],
    "without dropout": ["model.dropout=0.0"],
    "without augmentation": ["augment.translate=0", "augment.hflip=false"],
}


def base_overrides(epochs: int, subset: int) -> list[str]:
    return [
        'model.arch="mlp"', "model.hidden=[512, 256]", "model.dropout=0.3", "augment.translate=1",
        "augment.hflip=true", f"epochs={epochs}", f"data.train_subset={subset}", "batch_size=128",
        "optim.lr=0.05", "tta_flip=false", "threads=1",
    ]  # fmt: skip


def run_variant(overrides: list[str], seed: int, out_dir: str) -> float:
    cfg = load_config(None, [*overrides, f"seed={seed}", f'out_dir="{out_dir}"', f'name="ablation-s{seed}"'])
    run_dir = train(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows[-1]["val_acc"]  # the schedule's end, not the best epoch: no selection on noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-subset", type=int, default=20000)
    args = parser.parse_args()

    rows, started = [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for variant, extra in VARIANTS.items():
            accs = [run_variant(base_overrides(args.epochs, args.train_subset) + extra, s, tmp) for s in args.seeds]
            rows.append({
                "variant": variant, "overrides": extra, "seeds": args.seeds, "val_accs": accs,
                "val_acc_mean": statistics.mean(accs),
                "val_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            })  # fmt: skip
    print(f"\n{'variant':60s} {'val acc (mean ± std)':>22s}")
    for row in rows:
        print(f"{row['variant']:60s} {row['val_acc_mean']:.4f} ± {row['val_acc_std']:.4f}")
    command = (
        f"python -m benchmarks.ablation --seeds {' '.join(map(str, args.seeds))} "
        f"--epochs {args.epochs} --train-subset {args.train_subset}"
    )
    write_json(rows, RESULTS)
    print(f"wrote {RESULTS} in {time.time() - started:.0f}s ({command})")


if __name__ == "__main__":
    main()
