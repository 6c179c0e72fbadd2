"""Typed configs: TOML files, --set overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, load_config, parse_override
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
