"""One training step through the DistributedDataParallel path, as torchrun would start it.

    RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=<free> \\
        python -m benchmarks.ddp_step --config configs/cnn.toml --set device=\\"cuda\\" ... --out-dir DIR

Started by benchmarks.gpu_check (world size 1: NCCL on CUDA, gloo on CPU).
`training.train.main` joins the process group, wraps the model in DDP and trains;
a forward hook watches the DDP module, so the last line printed is a JSON record
of what really ran (backend, world size, DDP training steps, test accuracy).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from training.config import load_config
    from training.train import main as train_main

    seen = {"ddp_train_steps": 0, "backend": None, "world_size": None, "input_device": None}

    def watch(module, inputs, output) -> None:
        if isinstance(module, DistributedDataParallel) and module.training:
            seen["ddp_train_steps"] += 1
            seen["backend"] = dist.get_backend()
            seen["world_size"] = dist.get_world_size()
            seen["input_device"] = str(inputs[0].device)

    cfg = load_config(args.config, args.set)
    handle = torch.nn.modules.module.register_module_forward_hook(watch)
    try:
        run_dir = train_main(cfg, run_dir=args.out_dir, data_dir=str(args.data_dir) if args.data_dir else None)
    finally:
        handle.remove()
    summary = json.loads((run_dir / "summary.json").read_text())
    print(json.dumps({**seen, "test_acc": summary["test_acc"], "wall_seconds": summary["wall_seconds"]}), flush=True)


if __name__ == "__main__":
    main()
