"""The training configuration: typed dataclasses read from TOML, with `--set key=value` overrides.

Validated once here; the rest of the program trusts it. An unknown key or a bad
value is a ConfigError that names it.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from contract.devices import check_device
from training.augment import AugmentConfig
from training.models import ModelConfig
from training.precision import PRECISIONS


class ConfigError(ValueError):
    """A config file or override is malformed, names an unknown key, or has a bad value."""


@dataclass(frozen=True)
class DataConfig:
    data_dir: str = ""
    """Directory with the four Fashion-MNIST .gz files ("" = the usual search order)."""
    val_size: int = 5000
    """Images held out of the 60k training set for validation (early stopping, tuning)."""
    split_seed: int = 0
    """Seed of the stratified train/validation split."""
    train_subset: int = 0
    """Use only this many training images (stratified; 0 = all). For smoke tests and ablations."""
    loader: str = "tensor"
    """"tensor" (whole split on the device, batched augmentation) or "dataloader" (workers)."""
    workers: int = 2
    """DataLoader worker processes when loader = "dataloader"."""
    wardrobe: str = ""
    """The person's wardrobe to fine-tune on: an export zip, an image folder or a database URL."""
    wardrobe_sha256: str = ""
    """SHA-256 of the frozen wardrobe export a fine-tuning run used; the run fills it in, and a
    config that sets it refuses any other export."""
    wardrobe_items: int = 0
    """Items in that export (filled in by the run)."""

    def __post_init__(self) -> None:
        if self.loader not in ("tensor", "dataloader"):
            raise ConfigError(f"data.loader must be 'tensor' or 'dataloader', got {self.loader!r}")
        if not 0 < self.val_size < 60000:
            raise ConfigError(f"data.val_size must be in 1..59999, got {self.val_size!r}")
        if self.train_subset < 0:
            raise ConfigError(f"data.train_subset must be >= 0, got {self.train_subset!r}")
        if self.workers < 0:
            raise ConfigError(f"data.workers must be >= 0, got {self.workers!r}")
        if self.wardrobe_sha256 and (
            len(self.wardrobe_sha256) != 64 or not all(c in "0123456789abcdef" for c in self.wardrobe_sha256)
        ):
            raise ConfigError(f"data.wardrobe_sha256 must be 64 lower-case hex digits, got {self.wardrobe_sha256!r}")
        if self.wardrobe_items < 0:
            raise ConfigError(f"data.wardrobe_items must be >= 0, got {self.wardrobe_items!r}")


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"
    """"sgd" (Nesterov momentum) or "adamw"."""
    lr: float = 0.1
    """Peak learning rate."""
    momentum: float = 0.9
    """SGD momentum (Nesterov)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    weight_decay: float = 5e-4
    """Decoupled L2 on weights; never on BatchNorm parameters or biases."""
    label_smoothing: float = 0.1
    """Cross-entropy label smoothing."""

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "adamw"):
            raise ConfigError(f"optim.name must be 'sgd' or 'adamw', got {self.name!r}")
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"optim.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optim.momentum must be in [0, 1), got {self.momentum!r}")


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "onecycle"
    """"onecycle", "cosine" (linear warm-up then cosine decay) or "constant"."""
    warmup_epochs: float = 1.0
    """Warm-up length for "cosine"; for "onecycle" it sets pct_start = warmup_epochs / epochs."""

    def __post_init__(self) -> None:
        if self.name not in ("onecycle", "cosine", "constant"):
            raise ConfigError(f"schedule.name must be 'onecycle', 'cosine' or 'constant', got {self.name!r}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"schedule.warmup_epochs must be >= 0, got {self.warmup_epochs!r}")


@dataclass(frozen=True)
class FinetuneConfig:
    base: str = ""
    """Starting weights: "" trains from scratch; "default" is the shipped default model's weights
    (models/cnn.pt); else a checkpoint path. Anything but "" fine-tunes on data.wardrobe."""
    labels: str = "person"
    """Which wardrobe items to learn from: "person" (corrected or confirmed) or "all" (also the
    model's own uncorrected answers, i.e. self-training)."""
    held_out: float = 0.25
    """Fraction of each class's items held out (never trained on) to measure the result."""
    min_per_class: int = 2
    """Labelled items every class needs before a run starts (one to train on, one to hold out)."""
    min_items: int = 20
    """Labelled items needed in all."""
    replay: int = 6000
    """Fashion-MNIST training images mixed into every epoch (a fresh draw each epoch), so the
    model keeps what it knew."""
    own_share: float = 0.2
    """Share of each epoch made of the person's items, repeated (oversampled) to reach it."""
    freeze_batchnorm: bool = False
    """Keep the base model's BatchNorm statistics instead of letting them follow the mix of photos
    and replay (off: distillation already keeps Fashion-MNIST; benchmarks/finetune.py)."""
    distill: float = 4.0
    """Weight of distillation on the replay images: there the model is also pulled toward the start
    model's own answers (Learning without Forgetting), so it forgets less of Fashion-MNIST (0 = off)."""

    def __post_init__(self) -> None:
        if self.labels not in ("person", "all"):
            raise ConfigError(f"finetune.labels must be 'person' or 'all', got {self.labels!r}")
        if not 0 < self.held_out < 1:
            raise ConfigError(f"finetune.held_out must be in (0, 1), got {self.held_out!r}")
        if self.min_per_class < 0 or self.min_items < 0:
            raise ConfigError(
                f"finetune.min_per_class and min_items must be >= 0, got {self.min_per_class!r}, {self.min_items!r}"
            )
        if self.replay < 0:
            raise ConfigError(f"finetune.replay must be >= 0, got {self.replay!r}")
        if self.distill < 0:
            raise ConfigError(f"finetune.distill must be >= 0, got {self.distill!r}")
        if not 0 < self.own_share <= 1:
            raise ConfigError(f"finetune.own_share must be in (0, 1], got {self.own_share!r}")


@dataclass(frozen=True)
class TrainConfig:
    name: str = "run"
    """Run name, used in the run directory and the exported model's metadata."""
    epochs: int = 10
    """Maximum number of epochs."""
    batch_size: int = 256
    """Global batch size (split across ranks under torchrun)."""
    seed: int = 0
    """Seeds weights, shuffling, augmentation and dropout."""
    patience: int = 0
    """Early stopping: stop after this many epochs without a better validation accuracy (0 = off)."""
    ema_decay: float = 0.0
    """Exponential moving average of the weights, evaluated and saved instead of the raw weights (0 = off)."""
    tta_flip: bool = False
    """Evaluate on the image and its mirror and average the logits (the export bakes this in)."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu" or "cuda"."""
    threads: int = 0
    """CPU threads for torch (0 = all cores, divided between ranks)."""
    precision: str = "auto"
    """"auto" (bfloat16 autocast where the CPU or GPU has native bf16, fp32 elsewhere), "bf16"
    (an error where unsupported) or "fp32". BatchNorm, the loss and exports stay fp32."""
    out_dir: str = "runs"
    """Where run directories are created."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience!r}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        try:
            check_device(self.device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.schedule.name != "constant" and self.schedule.warmup_epochs > self.epochs:
            shorter = round(self.epochs * 0.3, 2)
            raise ConfigError(
                f"schedule.warmup_epochs = {self.schedule.warmup_epochs:g} is longer than the run "
                f"(epochs = {self.epochs}): set a shorter warm-up, e.g. --set schedule.warmup_epochs={shorter:g}"
            )
        if self.data.wardrobe and not self.finetune.base:
            raise ConfigError(
                f"data.wardrobe={self.data.wardrobe!r} needs starting weights: use configs/finetune.toml "
                'or set finetune.base ("default" = the shipped model\'s weights)'
            )

    @property
    def is_finetune(self) -> bool:
        return bool(self.finetune.base)


def _coerce(value, hint, key: str):
    """Turn a TOML value into the annotated type, or raise ConfigError naming the key."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return _build(hint, value, key + ".")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key} must have {len(args)} items, got {value!r}")
        return tuple(_coerce(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, args, strict=True)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return dict(value)
    if origin in (types.UnionType, typing.Union):
        raise ConfigError(f"{key}: unsupported union type")
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint!r}")


def config_keys(cls=None, prefix: str = "") -> list[str]:
    """Every key a config accepts, dotted as `--set` takes them: tables and their fields."""
    cls = TrainConfig if cls is None else cls
    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        keys.append(prefix + name)
        if dataclasses.is_dataclass(hint):
            keys += config_keys(hint, prefix + name + ".")
    return keys


def nearest_key(key: str) -> str | None:
    """The valid key most like `key`, judged on the whole key and on its last part
    (`train_subset` → `data.train_subset`, `warmup` → `schedule.warmup_epochs`); None when
    nothing is close."""
    leaf = key.rpartition(".")[2]

    def likeness(candidate: str) -> float:
        candidate_leaf = candidate.rpartition(".")[2]
        if len(leaf) >= 3 and candidate_leaf.startswith(leaf):
            return 1.0
        whole = difflib.SequenceMatcher(None, key, candidate).ratio()
        return max(whole, difflib.SequenceMatcher(None, leaf, candidate_leaf).ratio())

    best = max(config_keys(), key=likeness)  # the first of equals: the order the config declares
    return best if likeness(best) >= 0.7 else None


def _build(cls, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        key = prefix + unknown[0]
        guess = nearest_key(key)
        hint = f"did you mean '{guess}'?" if guess else f"known keys here: {sorted(names)}"
        raise ConfigError(f"unknown config key '{key}'; {hint}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def parse_override(text: str) -> tuple[list[str], object]:
    """`a.b=value` → (["a", "b"], value); the value is read as TOML, else as a plain string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return [part.strip() for part in key.split(".")], value


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _override(values: dict, text: str) -> dict:
    """`values` with the `key=value` override `text` applied (in place)."""
    keys, value = parse_override(text)
    node = values
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {text!r}: {k!r} is not a table")
    node[keys[-1]] = value
    return values


def load_config(path: Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a TOML config, apply `key=value` overrides, and validate everything."""
    values = _read_toml(path) if path is not None else {}
    for text in overrides:
        _override(values, text)
    return _build(TrainConfig, values)


RESUMABLE_KEYS = ("threads", "data.data_dir")
"""The keys a resumed run may change: how many CPU threads it uses and where it finds the dataset
(checked against the run's checksum). Every other key shapes what the run computes (the schedule's
length is in its saved state, the split, the batches and their augmentation follow from the seeds
and sizes), so a resumed run that changed one would match neither the old run nor a new one."""


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def resume_config(saved: dict, run_dir: Path, path: Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """The config of the run in `run_dir` (`saved`: its config.json's "config"), changed by what `path`
    (a TOML file) and `overrides` set. A key that changes anything but RESUMABLE_KEYS is refused,
    naming it: a resumed run keeps its own config."""
    run = config_from_dict(saved)
    values = dataclasses.asdict(run)
    sources = [(f"{path}", lambda v: _merge(v, _read_toml(path)))] if path is not None else []
    sources += [(f"--set {text}", lambda v, text=text: _override(v, text)) for text in overrides]
    for source, apply in sources:
        before = _flat(dataclasses.asdict(_build(TrainConfig, values)))
        after = _flat(dataclasses.asdict(_build(TrainConfig, apply(values))))
        refused = [f"{k} from {before[k]!r} to {after[k]!r}" for k in after if after[k] != before[k]
                   and k not in RESUMABLE_KEYS]  # fmt: skip
        if refused:
            raise ConfigError(
                f"{source} would change {'; '.join(refused)}, but a resumed run keeps its own config "
                f"({Path(run_dir) / 'config.json'}): on --resume only {', '.join(RESUMABLE_KEYS)} may change; "
                "start a new run to change the rest"
            )
    return _build(TrainConfig, values)


def _merge(values: dict, more: dict) -> dict:
    """`values` with every key of `more` set in it (tables merged, in place)."""
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            _merge(values[key], value)
        else:
            values[key] = value
    return values


def config_from_dict(values: dict) -> TrainConfig:
    """Rebuild a config saved with `dataclasses.asdict` (e.g. from a checkpoint)."""
    return _build(TrainConfig, values)
