"""A run directory: config.json, metrics.jsonl, learning_curve.png, summary.json, TensorBoard events."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tqdm import tqdm

from contract.files import atomic_write, write_json


class RunLog:
    """Writes the run's record (rank 0 only; other ranks get a silent log)."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            try:  # optional extra: practitioners look at TensorBoard first
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                self.tb = None

    def info(self, message: str) -> None:
        if self.enabled:
            tqdm.write(message)

    def start(self, cfg, extra: dict) -> None:
        if not self.enabled:
            return
        resolved = dataclasses.asdict(cfg)
        write_json({"config": resolved, **extra}, self.run_dir / "config.json")
        self.metrics_path.write_text("")
        self.info(f"run directory: {self.run_dir}")
        self.info("resolved config:\n" + json.dumps(resolved, indent=2))

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop rows of an epoch that was interrupted after logging but before its checkpoint."""
        if not self.enabled or not self.metrics_path.exists():
            return
        rows = [r for r in self.rows() if r["epoch"] <= epochs_done]
        atomic_write(self.metrics_path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in rows)))

    def rows(self) -> list[dict]:
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def epoch(self, row: dict, improved: bool) -> None:
        if not self.enabled:
            return
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.info(
            f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  lr {row['lr']:.2e}  "
            f"{row['seconds']:.1f}s  {row['precision']} {row['images_per_s']:,.0f} img/s"
            f"{'  *best' if improved else ''}"
        )
        if self.tb is not None:
            for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
                self.tb.add_scalar(key, row[key], row["epoch"])
            self.tb.flush()
        self.plot_learning_curve()

    def plot_learning_curve(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        epochs = [r["epoch"] for r in rows]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train (smoothed labels)")
        ax_loss.plot(epochs, [r["val_loss"] for r in rows], "o-", label="validation")
        ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
        ax_acc.plot(epochs, [r["train_acc"] for r in rows], "o-", label="train (augmented)")
        ax_acc.plot(epochs, [r["val_acc"] for r in rows], "o-", label="validation")
        ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        atomic_write(self.run_dir / "learning_curve.png", lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)

    def finish(self, summary: dict) -> None:
        if not self.enabled:
            return
        write_json(summary, self.run_dir / "summary.json")
        self.info(
            f"done: best epoch {summary['best_epoch']} val acc {summary['best_val_acc']:.4f}, "
            f"test acc {summary['test_acc']:.4f}, {summary['wall_seconds']:.0f}s"
        )
        if self.tb is not None:
            self.tb.close()
