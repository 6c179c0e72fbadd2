"""The GPU path, proven: one command that checks and measures every CUDA code path.

    python -m benchmarks.gpu_check --out DIR [--data-dir DIR] [--dry-run] [--budget-s 460]

With a CUDA GPU (about 8 minutes) it runs, each step guarded so that a failure is
recorded with its error and the next step still runs:

1. ddp       - one training step through training.train under torchrun's variables at
               world size 1 (DistributedDataParallel, NCCL), in a child process;
2. train     - the long recipe (configs/cnn-long.toml; the shipped configs/cnn.toml when a
               two-epoch probe says the long one would not fit the time budget) through
               training.train.main with device=cuda; checks that the convolutions really
               ran in bf16 autocast on channels_last tensors; images/s per epoch, time to
               0.94 validation accuracy, test accuracy;
3. export    - training.export with its parity check on the CUDA execution provider when
               onnxruntime has one, else on the CPU (recorded);
4. inference - the exported model through contract.runtime.load_model on CUDA (asserting
               the session really runs CUDAExecutionProvider) and on the CPU, torch eager in
               fp32 and in bf16/channels_last, and torch.compile: images/s and p50/p99 per
               call at batch 1, 64, 256 and 1024;
5. serving   - when bentoml, onnxruntime-gpu and wrk are there: the real service on the GPU
               under the load benchmark (64 connections x 1 image, 8 x 64 images), with the
               batch sizes it formed (/metrics) and the GPU utilisation (nvidia-ml-py).

Without a GPU, or with --dry-run, the same steps run in a dry mode: a tiny model, two
batches, the CPU, gloo instead of NCCL, the CPU execution provider, torch.compile's
"eager" backend (tests/test_gpu_check.py runs it in `make test`). Nothing needs the
network; no server outlives the command. DIR receives gpu.json (rewritten after every
step, so a killed run still leaves its finished steps), gpu_check.log, the exported
model and the run's record (run/: best.pt, config.json, metrics.jsonl, summary.json).

On a GPU machine without network access: put the four Fashion-MNIST .gz files (30 MB) in
shared/fashion-mnist/ at the repo root (git ignores shared/; a copied checkout takes it
along) and run from the repo root, with $OUT the folder whose files come back:

    PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check --out "$OUT" --data-dir shared/fashion-mnist

DIR then holds at most 7 files: gpu.json, gpu_check.log, <recipe>.onnx and run/ (4 files).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract.files import write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHIPPED_MODEL = ROOT / "models" / "cnn.onnx"
TARGET_VAL_ACC = 0.94
PACKAGES = ("torch", "numpy", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu", "bentoml",
            "nvidia-ml-py", "scikit-learn", "tqdm", "matplotlib")  # fmt: skip
RUN_FILES = ("best.pt", "config.json", "metrics.jsonl", "summary.json")  # into DIR/run/ (for `wardrobe report`)
log = logging.getLogger("gpu_check")


class Skipped(Exception):
    """A step that cannot run here; the message says why."""


@dataclass(frozen=True)
class Plan:
    """What one mode runs: the GPU check proper, or the dry mode's small version of every step."""

    dry: bool
    device: str
    overrides: tuple[str, ...]
    """Applied to both recipes (and the DDP step)."""
    probe_overrides: tuple[str, ...] | None
    """The two-epoch probe of the long recipe that decides whether it fits the budget (None: no probe)."""
    ddp_overrides: tuple[str, ...]
    seconds_per_batch: float
    min_calls: int
    compile_backend: str
    ddp_timeout_s: float
    serving_duration_s: int
    reserve_s: float
    """Seconds kept for export and inference after training (serving adds its own)."""
    batches: tuple[int, ...]
    recipe: Path = CONFIGS / "cnn-long.toml"
    fallback_recipe: Path = CONFIGS / "cnn.toml"


GPU = Plan(
    dry=False,
    device="cuda",
    overrides=('device="cuda"',),
    probe_overrides=("epochs=2", "patience=0"),
    # one optimizer step: a one-cycle schedule needs four, so the step runs at a constant rate
    ddp_overrides=("epochs=1", "data.train_subset=256", "batch_size=256", 'schedule.name="constant"'),
    seconds_per_batch=1.5,
    min_calls=5,
    compile_backend="inductor",
    ddp_timeout_s=180,
    serving_duration_s=15,
    reserve_s=210,
    batches=(1, 64, 256, 1024),
)
TINY = ("model.channels=[8,16]", "model.convs_per_stage=1", "epochs=1", "schedule.warmup_epochs=0.3",
        "data.train_subset=512", "batch_size=256", "data.val_size=500")  # fmt: skip
DRY = Plan(
    dry=True,
    device="cpu",
    overrides=('name="dry"', 'device="cpu"', *TINY),
    probe_overrides=None,  # choose_recipe has its own test; a probe would double the dry run's time
    ddp_overrides=("data.train_subset=256", 'schedule.name="constant"'),
    seconds_per_batch=0.02,
    min_calls=2,
    compile_backend="eager",  # dynamo's capture without inductor's code generation: seconds, not minutes
    ddp_timeout_s=120,
    serving_duration_s=2,
    reserve_s=0,
    batches=(1, 64),
)


def choose_recipe(plan: Plan, epoch_s: float, budget_s: float) -> dict:
    """The long recipe if its epochs at the probe's pace fit `budget_s`, else the shipped one (cut if need be)."""
    from training.config import load_config

    long_epochs = load_config(plan.recipe, plan.overrides).epochs
    estimate = long_epochs * epoch_s
    if estimate <= budget_s:
        why = f"{long_epochs} epochs x {epoch_s:.1f} s fit {budget_s:.0f} s"
        return {"recipe": plan.recipe, "extra": [], "why": why}
    why = f"the long recipe needs about {estimate:.0f} s ({long_epochs} x {epoch_s:.1f} s), over {budget_s:.0f} s"
    shipped_epochs = load_config(plan.fallback_recipe, plan.overrides).epochs
    if shipped_epochs * epoch_s <= budget_s:  # an upper bound: the shipped CNN is the smaller one
        return {"recipe": plan.fallback_recipe, "extra": [], "why": why}
    epochs = max(1, int(budget_s // epoch_s))
    why += f"; the shipped recipe cut to {epochs} epochs"
    extra = [f"epochs={epochs}"]
    if load_config(plan.fallback_recipe, plan.overrides).schedule.warmup_epochs > epochs:
        extra.append(f"schedule.warmup_epochs={epochs * 0.3:g}")  # a warm-up longer than the run is refused
    return {"recipe": plan.fallback_recipe, "extra": extra, "why": why}


class ConvWatch:
    """Records the first training-mode convolution with more than one input channel (a 1-channel
    tensor is trivially channels_last): its input layout and its output dtype under autocast."""

    def __enter__(self) -> ConvWatch:
        import torch

        self.seen: dict | None = None
        self.handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def _hook(self, module, inputs, output) -> None:
        import torch

        if self.seen is None and isinstance(module, torch.nn.Conv2d) and module.training and module.in_channels > 1:
            x = inputs[0]
            self.seen = {
                "device": str(x.device),
                "input_channels_last": x.is_contiguous(memory_format=torch.channels_last),
                "weight_channels_last": module.weight.is_contiguous(memory_format=torch.channels_last),
                "output_dtype": str(output.dtype).removeprefix("torch."),
            }
            self.handle.remove()  # one look is enough; the hook would cost every later call

    def __exit__(self, *exc_info) -> None:
        self.handle.remove()


def guarded(fn: Callable[..., dict], *args) -> dict:
    """Run one step or part: ok (its figures), skipped (why) or failed (the error); never raises Exception."""
    started = time.monotonic()
    try:
        record = {"status": "ok", **fn(*args)}
    except Skipped as why:
        record = {"status": "skipped", "reason": str(why)}
    except Exception as exc:
        log.exception("%s failed", getattr(fn, "__name__", fn))
        record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    record["seconds"] = round(time.monotonic() - started, 1)
    return record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sets(overrides) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


class GpuCheck:
    """The steps, in order, sharing what earlier ones produced (run directory, exported model)."""

    def __init__(self, plan: Plan, out: Path, work: Path, data_dir: Path, budget_s: float):
        self.plan, self.out, self.work, self.data_dir = plan, out, work, data_dir
        self.deadline = time.monotonic() + budget_s
        self.run_dir: Path | None = None
        self.model: Path | None = None
        self.results: dict = {
            "schema": 1,
            "mode": "dry" if plan.dry else "gpu",
            "command": " ".join(["python -m benchmarks.gpu_check", *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "budget_s": budget_s,
            "steps": {},
        }

    def save(self) -> None:
        write_json(self.results, self.out / "gpu.json")

    def run(self) -> dict:
        started = time.monotonic()
        steps = [("environment", self.environment), ("ddp", self.ddp), ("train", self.train),
                 ("export", self.export), ("inference", self.inference), ("serving", self.serving)]  # fmt: skip
        try:
            for name, fn in steps:
                log.info("== %s", name)
                record = self.results["steps"][name] = guarded(fn)
                log.info("== %s: %s (%.1f s) %s", name, record["status"], record["seconds"],
                         record.get("error") or record.get("reason") or "")  # fmt: skip
                self.save()
        finally:
            statuses = {name: r["status"] for name, r in self.results["steps"].items()}
            self.results["failed"] = [name for name, status in statuses.items() if status == "failed"]
            self.results["complete"] = len(statuses) == len(steps)
            self.results["wall_seconds"] = round(time.monotonic() - started, 1)
            self.save()
        return self.results

    # -- 0. the machine --------------------------------------------------------------------------

    def environment(self) -> dict:
        import onnxruntime
        import torch

        from benchmarks.gpu_serving import missing_for_serving
        from contract.metadata import source_commit

        def version(name: str) -> str | None:
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                return None

        info = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "source_commit": source_commit(),
            "packages": {name: version(name) for name in PACKAGES},
            "torch_cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(),
            "onnxruntime_providers": onnxruntime.get_available_providers(),
            "data_dir": str(self.data_dir),
            "serving_missing": missing_for_serving(self.plan.dry),
        }
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
                "multiprocessors": props.multi_processor_count,
                "bf16_supported": torch.cuda.is_bf16_supported(),
                "cudnn": torch.backends.cudnn.version(),
                "count": torch.cuda.device_count(),
            }
        return info

    # -- 1. training ----------------------------------------------------------------------------

    def ddp(self) -> dict:
        """training.train under torchrun's variables at world size 1, in a child process."""
        env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}  # fmt: skip
        command = [sys.executable, "-m", "benchmarks.ddp_step", "--config", str(self.plan.fallback_recipe),
                   *sets([*self.plan.overrides, *self.plan.ddp_overrides]), "--out-dir", str(self.work / "ddp"),
                   "--data-dir", str(self.data_dir)]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=self.plan.ddp_timeout_s)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"benchmarks.ddp_step exited with {done.returncode}: {done.stderr.strip()[-1500:]}")
        record = json.loads(done.stdout.strip().splitlines()[-1])
        backend = "nccl" if self.plan.device == "cuda" else "gloo"
        if record["backend"] != backend or record["world_size"] != 1 or record["ddp_train_steps"] < 1:
            raise AssertionError(f"expected DDP training steps over {backend} at world size 1, saw {record}")
        return record

    def train(self) -> dict:
        import torch

        from training.config import load_config
        from training.precision import resolve_precision
        from training.train import main as train_main

        plan, data_dir = self.plan, str(self.data_dir)
        epoch_s, choice = None, {"recipe": plan.recipe, "extra": [], "why": "dry mode: no probe"}
        if plan.probe_overrides is not None:
            probe_cfg = load_config(plan.recipe, [*plan.overrides, *plan.probe_overrides])
            probe = train_main(probe_cfg, run_dir=self.work / "probe", data_dir=data_dir)
            epoch_s = read_rows(probe)[-1]["seconds"]  # the second epoch: past CUDA start-up and kernel selection
            after = plan.reserve_s + (0 if self.serving_missing() else plan.serving_duration_s * 2 + 90)
            choice = choose_recipe(plan, epoch_s, max(0.0, self.deadline - time.monotonic() - after))
        overrides = [*plan.overrides, *choice["extra"]]
        cfg = load_config(choice["recipe"], overrides)
        log.info("recipe %s %s: %s", choice["recipe"].name, overrides, choice["why"])
        with ConvWatch() as watch:
            self.run_dir = train_main(cfg, run_dir=self.work / "run", data_dir=data_dir)
        (self.out / "run").mkdir(exist_ok=True)
        for name in RUN_FILES:
            if (self.run_dir / name).is_file():
                shutil.copy2(self.run_dir / name, self.out / "run" / name)
        record = {"recipe": str(choice["recipe"].relative_to(ROOT)), "overrides": overrides, "why": choice["why"],
                  "probe_epoch_s": epoch_s, **training_figures(self.run_dir), "precision": watch.seen}  # fmt: skip
        # The run's own precision ("auto"): bf16 on CUDA and on CPUs with AMX/AVX512-BF16, else fp32.
        precision = resolve_precision(cfg.precision, torch.device(plan.device))
        want_dtype = {"bf16": "bfloat16", "fp32": "float32"}[precision]
        seen = watch.seen or {}
        if not (seen.get("output_dtype") == want_dtype and seen.get("input_channels_last")
                and seen.get("weight_channels_last")):  # fmt: skip
            record |= {"status": "failed", "error": f"expected {want_dtype} convolutions on channels_last, saw {seen}"}
        return record

    def serving_missing(self) -> list[str]:
        from benchmarks.gpu_serving import missing_for_serving

        return missing_for_serving(self.plan.dry)

    def export(self) -> dict:
        from contract.devices import cuda_available
        from training.export import ExportError, export

        if self.run_dir is None:
            raise Skipped("no trained run (the train step did not finish)")
        cfg = json.loads((self.run_dir / "config.json").read_text())["config"]
        out = self.out / f"{cfg['name']}.onnx"
        parity = "cuda" if self.plan.device == "cuda" and cuda_available() else "cpu"
        record: dict = {"parity_device": parity}
        if parity == "cpu" and self.plan.device == "cuda":
            record["parity_note"] = "onnxruntime here has no usable CUDA execution provider: parity checked on the CPU"
        try:
            result = export(self.run_dir, out, str(self.data_dir), parity_device=parity)
        except ExportError as exc:
            if parity == "cpu":
                raise
            # Parity broken on the GPU is a finding; export with the CPU check so the later steps have a model.
            record |= {"status": "failed", "error": f"parity on CUDA: {exc}", "parity_device": "cpu"}
            result = export(self.run_dir, out, str(self.data_dir), parity_device="cpu")
        self.model = result.path
        return record | {
            "model": result.path.name,
            "test_accuracy": result.test_accuracy,
            "val_accuracy": result.val_accuracy,
            "max_abs_logit_diff": result.max_abs_logit_diff,
            "parameters": result.parameters,
            "size_bytes": result.size_bytes,
        }

    # -- 2. inference ---------------------------------------------------------------------------

    def inference(self) -> dict:
        import onnxruntime

        from benchmarks.gpu_inference import bench_onnxruntime, bench_torch

        plan = self.plan
        model = self.model or SHIPPED_MODEL
        graph, graph_source = self.torch_graph()
        timing = (plan.batches, plan.seconds_per_batch, plan.min_calls)

        def onnxruntime_cuda() -> dict:
            if plan.dry:
                raise Skipped("dry mode: no CUDA device")
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise Skipped(f"onnxruntime {onnxruntime.__version__} is the CPU build (onnxruntime-gpu not installed)")
            return bench_onnxruntime(model, "cuda", *timing)

        def onnxruntime_cpu() -> dict:
            return bench_onnxruntime(model, "cpu", *timing)

        def torch_eager_fp32() -> dict:
            return bench_torch(copy.deepcopy(graph), plan.device, *timing, bf16=False, channels_last=False)

        def torch_eager_bf16_channels_last() -> dict:
            return bench_torch(copy.deepcopy(graph), plan.device, *timing, bf16=True, channels_last=True)

        def torch_compile() -> dict:
            return bench_torch(copy.deepcopy(graph), plan.device, *timing, bf16=True, channels_last=True,
                               compile_backend=plan.compile_backend)  # fmt: skip

        parts = {}
        for part in (onnxruntime_cuda, onnxruntime_cpu, torch_eager_fp32, torch_eager_bf16_channels_last,
                     torch_compile):  # fmt: skip
            log.info("-- inference: %s", part.__name__)
            parts[part.__name__] = guarded(part)
        failed = [name for name, r in parts.items() if r["status"] == "failed"]
        record: dict = {"onnx_model": str(model.relative_to(self.out) if model.is_relative_to(self.out) else model),
                        "torch_model": graph_source, "parts": parts}  # fmt: skip
        if model == SHIPPED_MODEL:
            record["note"] = "no exported model (the export step did not finish): the shipped models/cnn.onnx instead"
        if failed:
            record |= {"status": "failed", "error": f"failed: {', '.join(failed)}"}
        return record

    def torch_graph(self):
        """What the ONNX file holds, in torch: the trained run's, else the recipe's model untrained."""
        from training.config import load_config
        from training.export import InferenceGraph, fold_batchnorm, load_trained
        from training.models import build_model

        if self.run_dir is not None:
            model, cfg, _, _ = load_trained(self.run_dir)
            source = "the trained run (best.pt)"
        else:
            cfg = load_config(self.plan.recipe, self.plan.overrides)
            model, source = build_model(cfg.model).eval(), f"untrained {self.plan.recipe.name} (no trained run)"
        return InferenceGraph(fold_batchnorm(model), cfg.tta_flip).eval(), source

    # -- 3. serving -----------------------------------------------------------------------------

    def serving(self) -> dict:
        from benchmarks.gpu_serving import run_serving

        if missing := self.serving_missing():
            raise Skipped("; ".join(missing))
        return run_serving(self.model or SHIPPED_MODEL, self.work, self.plan.serving_duration_s)


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def training_figures(run_dir: Path) -> dict:
    """Images/s per epoch, time to the target validation accuracy and the final figures of a run."""
    rows = read_rows(run_dir)
    n_train = json.loads((run_dir / "config.json").read_text())["train_images"]
    summary = json.loads((run_dir / "summary.json").read_text())
    per_epoch = [{"epoch": r["epoch"], "seconds": round(r["seconds"], 2), "images_per_s": round(n_train / r["seconds"]),
                  "val_acc": r["val_acc"]} for r in rows]  # fmt: skip
    elapsed, reached = 0.0, None
    for r in rows:
        elapsed += r["seconds"]
        if r["val_acc"] >= TARGET_VAL_ACC:
            reached = {"epoch": r["epoch"], "seconds": round(elapsed, 1)}
            break
    speeds = sorted(e["images_per_s"] for e in per_epoch)
    return {
        "train_images": n_train,
        "epochs_run": len(rows),
        "images_per_s_median": speeds[len(speeds) // 2],
        "images_per_s_note": "training images / epoch wall time (the epoch's validation pass included)",
        f"time_to_val_acc_{TARGET_VAL_ACC}": reached,
        "best_epoch": summary["best_epoch"],
        "best_val_acc": summary["best_val_acc"],
        "test_acc": summary["test_acc"],
        "wall_seconds": round(summary["wall_seconds"], 1),
        "per_epoch": per_epoch,
    }


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where gpu.json, the log and the model go")
    parser.add_argument("--data-dir", type=Path, help="the four Fashion-MNIST .gz files (default: the usual search)")
    parser.add_argument("--dry-run", action="store_true", help="the dry mode even where a GPU is available")
    parser.add_argument("--budget-s", type=float, default=460, help="seconds the whole check may take (default 460)")
    parser.add_argument("--work-dir", type=Path, help="for checkpoints and logs (default: a temporary one, removed)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    from training.fashion_mnist import FILES, DatasetError, locate

    try:
        data_dir = locate(args.data_dir, download=False)  # never the network: a missing dataset is said now
    except DatasetError as exc:
        parser.error(str(exc))
    missing = [name for name, _ in FILES.values() if not (data_dir / name).is_file()]
    if missing:
        parser.error(f"{data_dir}: no Fashion-MNIST file {missing[0]} (--data-dir: the folder with the four .gz files)")
    import torch

    plan = DRY if args.dry_run or not torch.cuda.is_available() else GPU
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="wardrobe-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for handler in (logging.StreamHandler(), logging.FileHandler(args.out / "gpu_check.log", mode="w")):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops servers and writes gpu.json
    log.info("gpu_check: %s mode, out %s, work %s, data %s", "dry" if plan.dry else "GPU", args.out, work, data_dir)
    try:
        results = GpuCheck(plan, args.out, work, data_dir, args.budget_s).run()
        log.info("wrote %s: failed steps %s, %.0f s", args.out / "gpu.json", results["failed"] or "none",
                 results["wall_seconds"])  # fmt: skip
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
        for handler in log.handlers[:]:
            log.removeHandler(handler)
            handler.close()
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
