"""Typed configs: TOML files, --set overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from training.config import ConfigError, load_config, parse_override, resume_config
from wardrobe.cli import main as cli_main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.name == path.stem


def test_overrides_reach_nested_fields_with_types():
    cfg = load_config(None, ['model.arch="mlp"', "model.hidden=[64, 32]", "optim.lr=0.05", "tta_flip=true"])
    assert cfg.model.hidden == (64, 32)
    assert cfg.optim.lr == 0.05 and cfg.tta_flip is True


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'"):
        load_config(None, ["optim.lrr=0.1"])


@pytest.mark.parametrize(
    ("given", "named", "meant"),
    [("train_subset", "train_subset", "data.train_subset"), ("optim.lrr", "optim.lrr", "optim.lr"),
     ("lr", "lr", "optim.lr"), ("warmup", "warmup", "schedule.warmup_epochs"),
     ("optimizer.lr", "optimizer", "optim")],
)  # fmt: skip
def test_unknown_key_suggests_the_nearest_full_key(given, named, meant):
    with pytest.raises(ConfigError, match=rf"unknown config key '{named}'; did you mean '{meant}'\?"):
        load_config(None, [f"{given}=1"])


def test_unknown_key_with_nothing_close_lists_the_keys_of_its_table():
    with pytest.raises(ConfigError, match=r"unknown config key 'data.zzz'; known keys here: \[.*'train_subset'"):
        load_config(None, ["data.zzz=1"])


def test_a_warm_up_longer_than_the_run_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"schedule.warmup_epochs = 2 is longer than the run \(epochs = 1\): "
                                          r"set a shorter warm-up, e.g. --set schedule.warmup_epochs=0.3"):  # fmt: skip
        load_config(Path(__file__).resolve().parents[1] / "configs" / "cnn-fast.toml", ["epochs=1"])
    assert load_config(None, ["epochs=1", "schedule.warmup_epochs=1"]).schedule.warmup_epochs == 1
    assert load_config(None, ["epochs=1", "schedule.warmup_epochs=5", 'schedule.name="constant"']).epochs == 1


def test_the_readme_quick_training_line_is_a_valid_config():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    [line] = [
        line.strip()
        for line in readme.splitlines()
        if line.strip().startswith("wardrobe train --config configs/cnn-fast")
    ]
    args = line.split()
    overrides = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
    cfg = load_config(Path(__file__).resolve().parents[1] / args[3], overrides)
    assert cfg.epochs == 1 and cfg.data.train_subset == 5000


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"epochs must be an integer, got 'ten'"):
        load_config(None, ["epochs=ten"])


def test_out_of_range_value_is_named():
    with pytest.raises(ConfigError, match=r"model.dropout must be in \[0, 1\), got 1.5"):
        load_config(None, ["model.dropout=1.5"])


def test_bad_choice_is_named():
    with pytest.raises(ConfigError, match=r"optim.name must be 'sgd' or 'adamw', got 'adam'"):
        load_config(None, ['optim.name="adam"'])


def test_override_without_equals_is_refused():
    with pytest.raises(ConfigError, match=r"override 'epochs' must look like key=value"):
        parse_override("epochs")


def test_invalid_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


def test_cli_prints_one_line_for_a_config_error(capsys):
    code = cli_main(["train", "--config", str(CONFIGS[0]), "--set", "optim.lrr=1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "wardrobe train: error: unknown config key 'optim.lrr'" in err
    assert "Traceback" not in err


def test_the_finetune_defaults_are_the_recipe_of_configs_finetune_toml():
    """One recipe: a config that sets only finetune.base fine-tunes as configs/finetune.toml does."""
    import dataclasses
    import tomllib

    from training.config import FinetuneConfig

    recipe = tomllib.loads((CONFIGS[0].parent / "finetune.toml").read_text())["finetune"]
    defaults = dataclasses.asdict(FinetuneConfig())
    assert set(recipe) == set(defaults)  # the file states the whole recipe
    assert {k: v for k, v in recipe.items() if k != "base"} == {k: v for k, v in defaults.items() if k != "base"}
    assert (defaults["base"], recipe["base"]) == ("", "default")  # "" is what makes a config train from scratch


def _saved_run(*overrides: str) -> dict:
    """What a run's config.json holds under "config"."""
    return dataclasses.asdict(load_config(CONFIGS_DIR / "cnn-fast.toml", list(overrides)))


CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


def test_resume_keeps_the_runs_config_and_honours_only_the_resumable_keys(tmp_path):
    saved = _saved_run("epochs=2", "schedule.warmup_epochs=0.5")
    same = resume_config(saved, tmp_path)
    assert dataclasses.asdict(same) == saved
    changed = resume_config(saved, tmp_path, None, ["threads=3", 'data.data_dir="/elsewhere"', "epochs=2"])
    assert (changed.threads, changed.data.data_dir, changed.epochs) == (3, "/elsewhere", 2)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["epochs=5"], "--set epochs=5 would change epochs from 2 to 5"),
        (["optim.lr=0.5"], "--set optim.lr=0.5 would change optim.lr from"),
        (["model.channels=[8, 16, 32]"], "would change model.channels from (32, 64, 128) to (8, 16, 32)"),
        (["seed=1", "threads=2"], "--set seed=1 would change seed from 0 to 1"),
    ],
)
def test_resume_refuses_a_change_to_what_the_run_computes_naming_the_key(tmp_path, overrides, named):
    with pytest.raises(ConfigError, match="a resumed run keeps its own config") as refused:
        resume_config(_saved_run("epochs=2", "schedule.warmup_epochs=0.5"), tmp_path, None, overrides)
    assert named in str(refused.value) and "only threads, data.data_dir may change" in str(refused.value)
    assert str(tmp_path / "config.json") in str(refused.value)


def test_resume_takes_the_config_the_run_came_from_or_an_empty_one_and_names_a_different_one(tmp_path):
    saved = _saved_run()
    assert dataclasses.asdict(resume_config(saved, tmp_path, CONFIGS_DIR / "cnn-fast.toml")) == saved
    assert dataclasses.asdict(resume_config(saved, tmp_path, Path(os.devnull))) == saved  # `--config /dev/null`
    with pytest.raises(ConfigError, match=r"configs/cnn\.toml would change name from 'cnn-fast' to 'cnn'"):
        resume_config(saved, tmp_path, CONFIGS_DIR / "cnn.toml")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'; did you mean 'optim\.lr'\?"):
        resume_config(saved, tmp_path, None, ["optim.lrr=1"])
