"""The metadata a model file carries: its keys, writing them, and reading them back.

An exported model is self-describing: besides the graph, its ONNX
`metadata_props` hold the class names, where it came from (config, dataset,
source commit), how it scored, and the validation split it was chosen on.
docs/contract.md lists every key. Writers (training/export.py,
training/quantize.py) and readers (contract/runtime.py, the report, the
service) use the names below, never string literals, and the readers below
fail loudly, naming the key, instead of guessing a default.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx

# ---------------------------------------------------------------------------
# The keys (values are always strings; JSON where the value is structured)

CLASSES = "classes"
"""JSON list of the class names, index = class id. The only key the runtime requires."""
ARCHITECTURE = "architecture"
"""One line describing the network, e.g. "CNN channels=[32, 64, 128] convs=[2, 2, 2] +flip-TTA"."""
PARAMETERS = "parameters"
"""Trainable parameters of the PyTorch model, an integer."""
DATASET_SHA256 = "dataset_sha256"
"""SHA-256 over the four Fashion-MNIST files' decompressed contents (training/fashion_mnist.py)."""
SPLIT_SEED = "split_seed"
"""Seed of the stratified train/validation split of the 60,000 training images."""
VAL_SIZE = "val_size"
"""Size of that validation split (absent in models exported before it was recorded: see `validation_split`)."""
CONFIG = "config"
"""The resolved training config, as JSON (training/config.py's TrainConfig)."""
SOURCE_COMMIT = "source_commit"
"""Git commit the model was trained from (`source_commit()`), "-dirty" with local changes."""
TRAINED_EPOCHS = "trained_epochs"
"""Epochs trained when the exported checkpoint was written."""
EXPORTED_AT = "exported_at"
"""UTC time of the export, ISO 8601."""
INPUT_MEAN = "input_mean"
INPUT_STD = "input_std"
"""The normalisation the graph applies itself (its input stays raw pixels in [0, 1])."""
OPSET = "opset"
"""ONNX opset the graph was exported with."""
TEST_ACCURACY = "test_accuracy"
VAL_ACCURACY = "val_accuracy"
"""Accuracy of this very file, measured through onnxruntime on the test set / the validation split."""
PARITY_REFERENCE = "parity_reference"
"""What this file's outputs were compared with: the PyTorch model (export) or the FP32 model (INT8)."""
PARITY_MAX_ABS_LOGIT_DIFF = "parity_max_abs_logit_diff"
"""Largest |logit difference| over the 10,000 test images between this file and its parity reference."""
PARITY_CHANGED_PREDICTIONS = "parity_changed_predictions"
"""Test images whose predicted class differs between this file and its parity reference."""
QUANTIZATION = "quantization"
"""How an INT8 model was quantized (absent for FP32 models)."""
TEMPERATURE = "temperature"
"""The temperature fitted on the validation split; the graph already divides its logits by it,
so softmax(logits) is the calibrated confidence (absent: the logits are raw)."""
VAL_ECE = "val_ece"
TEST_ECE = "test_ece"
"""Expected calibration error (15 equal-width bins) of softmax(logits) of this file."""
UNSURE_THRESHOLD = "unsure_threshold"
"""Answers with a confidence below this are marked `unsure` (see `unsure_threshold`)."""
UNSURE_TARGET_ACCURACY = "unsure_target_accuracy"
"""The validation accuracy of the answers at or above UNSURE_THRESHOLD that the threshold was chosen for."""
WARDROBE_SHA256 = "wardrobe_sha256"
"""Fine-tuned models only: SHA-256 of the frozen wardrobe export zip the run learned from."""
WARDROBE_ITEMS = "wardrobe_items"
"""Fine-tuned models only: items in that export."""
WARDROBE_HELD_OUT = "wardrobe_held_out"
"""Fine-tuned models only: JSON list of the export's item ids held out of training, the items the
report's "Your wardrobe" section and the service's canary measure the model on."""
FINETUNED_FROM_SHA256 = "finetuned_from_sha256"
"""Fine-tuned models only: SHA-256 of the start weights file (e.g. models/cnn.pt)."""

PARITY_REFERENCE_PYTORCH = "pytorch"
PARITY_REFERENCE_FP32 = "fp32-onnx"

DIRTY_SUFFIX = "-dirty"
"""Appended to `source_commit` when tracked files differ from the commit (as `git describe --dirty`)."""

REPO = Path(__file__).resolve().parents[1]


class MetadataError(ValueError):
    """A metadata entry is missing or malformed; the message names the key."""


# ---------------------------------------------------------------------------
# Writing and reading


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """A model's metadata as a plain dict."""
    return {p.key: p.value for p in model.metadata_props}


def write_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    """Set (add or overwrite) metadata entries in place; other entries are kept."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"metadata {key!r} must be a string, got {type(value).__name__}")
        if key in existing:
            existing[key].value = value
        else:
            existing[key] = model.metadata_props.add(key=key, value=value)


def _json_entry(metadata: Mapping[str, str], key: str) -> object:
    """The JSON value stored under `key`; a MetadataError naming the key when it is not valid JSON."""
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as exc:
        raise MetadataError(f"metadata '{key}' is not valid JSON ({exc})") from None
    except RecursionError:  # json's parser recurses per nesting level; an uploaded model may nest deeply
        raise MetadataError(f"metadata '{key}' is JSON nested too deep") from None


def parse_classes(metadata: Mapping[str, str], count: int) -> tuple[str, ...]:
    """The class names: a JSON list of `count` distinct non-empty names."""
    if CLASSES not in metadata:
        raise MetadataError(f"metadata has no '{CLASSES}' entry (a JSON list of the class names)")
    classes = _json_entry(metadata, CLASSES)
    if (
        not isinstance(classes, list)
        or len(classes) != count
        or not all(isinstance(c, str) and c.strip() for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise MetadataError(
            f"metadata '{CLASSES}' must be a JSON list of {count} distinct names, got {metadata[CLASSES][:200]!r}"
        )
    return tuple(classes)


def training_config(metadata: Mapping[str, str]) -> dict | None:
    """The resolved training config stored under 'config'; None if the model has none."""
    if CONFIG not in metadata:
        return None
    config = _json_entry(metadata, CONFIG)
    if not isinstance(config, dict):
        raise MetadataError(f"metadata '{CONFIG}' must be a JSON object, got {type(config).__name__}")
    return config


def number(metadata: Mapping[str, str], key: str) -> float:
    """A numeric entry (accuracy, parity, …) as a float; MetadataError if missing or not a number."""
    if key not in metadata:
        raise MetadataError(f"metadata has no '{key}' entry")
    try:
        return float(metadata[key])
    except ValueError:
        raise MetadataError(f"metadata '{key}' must be a number, got {metadata[key][:100]!r}") from None


DEFAULT_UNSURE_THRESHOLD = 0.5
"""The `unsure` threshold of models that record none (exported before calibration): below an even
chance the answer is more likely wrong than right."""


def unsure_threshold(metadata: Mapping[str, str]) -> float:
    """The confidence below which an answer is marked `unsure`: the model's recorded
    UNSURE_THRESHOLD, else DEFAULT_UNSURE_THRESHOLD."""
    if UNSURE_THRESHOLD not in metadata:
        return DEFAULT_UNSURE_THRESHOLD
    value = number(metadata, UNSURE_THRESHOLD)
    if not 0.0 <= value <= 1.0:
        raise MetadataError(f"metadata '{UNSURE_THRESHOLD}' must be in [0, 1], got {value!r}")
    return value


# ---------------------------------------------------------------------------
# The validation split


@dataclass(frozen=True)
class ValidationSplit:
    """How the training images were split: `val_size` of the 60,000 held out for validation,
    class-stratified, drawn with `seed`.

    contract/split.py's `stratified_split(labels, val_size, seed)` turns this back into
    the exact indices the model was chosen on.
    """

    val_size: int
    seed: int


def _whole(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MetadataError(f"{where} must be a whole number, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise MetadataError(f"{where} must be a whole number, got {value!r}") from None


def split_of_config(config: Mapping) -> ValidationSplit:
    """The split recorded in a resolved training config (its `data.val_size` and `data.split_seed`)."""
    data = config.get("data")
    if not isinstance(data, Mapping) or "val_size" not in data or "split_seed" not in data:
        raise MetadataError("the training config has no data.val_size and data.split_seed")
    return ValidationSplit(
        _whole(data["val_size"], "config data.val_size"), _whole(data["split_seed"], "config data.split_seed")
    )


def validation_split(metadata: Mapping[str, str]) -> ValidationSplit:
    """The validation split a model was chosen on, as recorded in its metadata.

    The explicit 'val_size' and 'split_seed' entries when present, else the
    training config stored under 'config' (models exported before 'val_size'
    was recorded). A model that records neither, or records them
    inconsistently, is an error: guessing a split would silently evaluate on
    training images.
    """
    config = training_config(metadata)
    from_config = split_of_config(config) if config is not None and "data" in config else None
    if VAL_SIZE in metadata and SPLIT_SEED in metadata:
        split = ValidationSplit(
            _whole(metadata[VAL_SIZE], f"metadata '{VAL_SIZE}'"),
            _whole(metadata[SPLIT_SEED], f"metadata '{SPLIT_SEED}'"),
        )
        if from_config is not None and from_config != split:
            raise MetadataError(
                f"metadata '{VAL_SIZE}'/'{SPLIT_SEED}' ({split.val_size}/{split.seed}) disagree with "
                f"the stored training config ({from_config.val_size}/{from_config.seed})"
            )
        return split
    if from_config is None:
        raise MetadataError(
            f"metadata records no validation split: no '{VAL_SIZE}' entry and no training "
            f"config with data.val_size ('{CONFIG}')"
        )
    if SPLIT_SEED in metadata and _whole(metadata[SPLIT_SEED], f"metadata '{SPLIT_SEED}'") != from_config.seed:
        raise MetadataError(
            f"metadata '{SPLIT_SEED}' ({metadata[SPLIT_SEED]}) disagrees with the stored training "
            f"config's data.split_seed ({from_config.seed})"
        )
    return from_config


def split_metadata(split: ValidationSplit) -> dict[str, str]:
    """The entries that record `split` in a model's metadata."""
    return {VAL_SIZE: str(split.val_size), SPLIT_SEED: str(split.seed)}


# ---------------------------------------------------------------------------
# Provenance


def source_commit(repo: Path = REPO) -> str:
    """HEAD of the checkout at `repo`, plus DIRTY_SUFFIX when tracked files have local
    changes; "unknown" outside a git checkout or without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + (DIRTY_SUFFIX if dirty else "")


def held_out_ids(metadata: Mapping[str, str]) -> list[int] | None:
    """The wardrobe item ids a fine-tuned model never trained on; None for a model without them."""
    if WARDROBE_HELD_OUT not in metadata:
        return None
    ids = _json_entry(metadata, WARDROBE_HELD_OUT)
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise MetadataError(f"metadata '{WARDROBE_HELD_OUT}' must be a JSON list of item ids, got {ids!r:.100}")
    return ids
