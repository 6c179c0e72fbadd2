"""contract.metadata: writing and reading the keys, the recorded validation split, provenance."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import onnx
import pytest

from contract import metadata
from contract.metadata import MetadataError, ValidationSplit

MODELS = Path(__file__).resolve().parents[1] / "models"


def _config(val_size=5000, split_seed=0) -> str:
    return json.dumps({"name": "x", "data": {"val_size": val_size, "split_seed": split_seed}})


def test_written_entries_read_back_and_others_are_kept():
    model = onnx.ModelProto()
    model.metadata_props.add(key="onnx.infer", value="onnxruntime.quant")
    metadata.write_metadata(model, {metadata.TEST_ACCURACY: "0.9000", metadata.CLASSES: "[]"})
    metadata.write_metadata(model, {metadata.TEST_ACCURACY: "0.9100"})
    assert metadata.read_metadata(model) == {
        "onnx.infer": "onnxruntime.quant", "test_accuracy": "0.9100", "classes": "[]",
    }  # fmt: skip
    assert [p.key for p in model.metadata_props].count("test_accuracy") == 1
    with pytest.raises(TypeError, match="metadata 'parameters' must be a string, got int"):
        metadata.write_metadata(model, {metadata.PARAMETERS: 12})


def test_the_split_comes_from_the_explicit_entries():
    meta = {"val_size": "2000", "split_seed": "7", "config": _config(2000, 7)}
    assert metadata.validation_split(meta) == ValidationSplit(val_size=2000, seed=7)
    assert metadata.split_metadata(ValidationSplit(2000, 7)) == {"val_size": "2000", "split_seed": "7"}


def test_the_split_of_an_older_model_comes_from_its_stored_config():
    # models exported before val_size was recorded: the config knows it (not a guessed 5000)
    meta = {"split_seed": "3", "config": _config(1234, 3)}
    assert metadata.validation_split(meta) == ValidationSplit(val_size=1234, seed=3)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"split_seed": "0"}, "metadata records no validation split: no 'val_size' entry"),
        ({"split_seed": "1", "config": _config(5000, 0)}, r"'split_seed' \(1\) disagrees .* data.split_seed \(0\)"),
        ({"val_size": "100", "split_seed": "0", "config": _config(5000, 0)}, "disagree with the stored"),
        ({"val_size": "many", "split_seed": "0"}, "metadata 'val_size' must be a whole number, got 'many'"),
        ({"config": "{not json"}, "metadata 'config' is not valid JSON"),
        ({"config": "[1, 2]"}, "metadata 'config' must be a JSON object, got list"),
        ({"config": "[" * 100_000 + "]" * 100_000}, "metadata 'config' is JSON nested too deep"),
    ],
)
def test_a_missing_or_inconsistent_split_is_an_error_naming_the_key(meta, message):
    with pytest.raises(MetadataError, match=message):
        metadata.validation_split(meta)


def test_numbers_are_read_loudly():
    assert metadata.number({"test_accuracy": "0.9258"}, metadata.TEST_ACCURACY) == 0.9258
    with pytest.raises(MetadataError, match="metadata has no 'val_accuracy' entry"):
        metadata.number({}, metadata.VAL_ACCURACY)
    with pytest.raises(MetadataError, match="metadata 'test_accuracy' must be a number, got 'high'"):
        metadata.number({"test_accuracy": "high"}, metadata.TEST_ACCURACY)


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.onnx")), ids=lambda p: p.stem)
def test_every_shipped_model_records_its_split(path):
    meta = metadata.read_metadata(onnx.load(path, load_external_data=False))
    assert metadata.validation_split(meta) == ValidationSplit(val_size=5000, seed=0)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_source_commit_names_the_head_and_marks_local_changes(tmp_path):
    assert metadata.source_commit(tmp_path) == "unknown"  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert metadata.source_commit(tmp_path) == head
    (tmp_path / "untracked.txt").write_text("not part of any commit")
    assert metadata.source_commit(tmp_path) == head  # untracked files do not make it dirty
    (tmp_path / "a.txt").write_text("two")
    assert metadata.source_commit(tmp_path) == head + "-dirty"
