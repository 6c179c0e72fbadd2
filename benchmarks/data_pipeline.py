"""Images/s of one training epoch's data pipeline: our in-memory fast path vs
torchvision's FashionMNIST + DataLoader with the same augmentations, in one run.

    .venv/bin/python -m benchmarks.data_pipeline [--batch-size 256] [--workers 2] [--repeats 3]

No model runs: this measures only how fast each path can hand augmented
batches to the training step. Results go to benchmarks/results/data_pipeline.json.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torchvision import transforms

from contract.files import write_json
from contract.metadata import source_commit
from contract.split import stratified_split
from training import fashion_mnist
from training.augment import AugmentConfig
from training.data import TensorBatchLoader
from training.presets import TrainPreset

RESULTS = Path(__file__).resolve().parent / "results" / "data_pipeline.json"


def time_epoch(loader) -> tuple[float, int]:
    start, seen = time.perf_counter(), 0
    for x, _ in loader:
        seen += len(x)
    return time.perf_counter() - start, seen


def torchvision_root(ds: fashion_mnist.FashionMNIST, directory: Path) -> Path:
    raw = directory / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, _ in fashion_mnist.FILES.values():
        (raw / name.removesuffix(".gz")).write_bytes(gzip.decompress((ds.source / name).read_bytes()))
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    ds = fashion_mnist.load()
    split = stratified_split(ds.train_labels)
    augment = AugmentConfig(translate=2, hflip=True, erase_prob=0.25)
    cpu = torch.device("cpu")
    fast = TensorBatchLoader(
        ds.train_images[split.train_indices], ds.train_labels[split.train_indices], args.batch_size, cpu,
        shuffle=True, augment=augment, seed=0,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        preset = transforms.Compose([transforms.ToTensor(), TrainPreset(augment)])
        reference_ds = torch.utils.data.Subset(
            torchvision.datasets.FashionMNIST(torchvision_root(ds, Path(tmp)), train=True, transform=preset),
            split.train_indices.tolist(),
        )
        reference = torch.utils.data.DataLoader(
            reference_ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
            persistent_workers=args.workers > 0,
        )  # fmt: skip
        results = {}
        paths = {
            "fast path (tensors + batched augmentation)": fast,
            f"torchvision FashionMNIST + DataLoader ({args.workers} workers)": reference,
        }
        for name, loader in paths.items():
            time_epoch(loader)  # warm-up epoch: worker start-up, page cache
            rates = []
            for epoch in range(args.repeats):
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
                seconds, seen = time_epoch(loader)
                rates.append(seen / seconds)
            results[name] = {"images_per_s_median": statistics.median(rates), "images_per_s": rates}
            print(f"{name:60s} {statistics.median(rates):>12,.0f} images/s (median of {args.repeats} epochs)")
    names = list(results)
    ratio = results[names[0]]["images_per_s_median"] / results[names[1]]["images_per_s_median"]
    print(f"speed-up: {ratio:.1f}x")
    write_json(
        {
            "command": "python -m benchmarks.data_pipeline "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
            "augmentation": {"translate": 2, "hflip": True, "erase_prob": 0.25},
            "batch_size": args.batch_size,
            "results": results,
            "speedup": ratio,
            "commit": source_commit(),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
            "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        },
        RESULTS,
    )


if __name__ == "__main__":
    main()
