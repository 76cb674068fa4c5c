"""Typed YAML configs: unknown keys and bad values are errors with their line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.config import StrictModel, dump_config, load_config
from toolkit.errors import ConfigError


class Optimiser(StrictModel):
    lr: float = 1e-3
    warmup_steps: int = 10000


class Config(StrictModel):
    name: str
    optimiser: Optimiser = Optimiser()


def test_valid_config_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: run\noptimiser:\n  lr: 0.01\n")
    config = load_config(path, Config)
    assert config.optimiser.lr == 0.01 and config.optimiser.warmup_steps == 10000
    path.write_text(dump_config(config))
    assert load_config(path, Config) == config


def test_unknown_keys_and_bad_values_name_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: run\noptimiser:\n  lr: fast\n  warmup: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, Config)
    message = str(info.value)
    assert "line 3, optimiser.lr" in message
    assert "line 4, optimiser.warmup: unknown key" in message


def test_yaml_syntax_error_and_unsafe_tags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="line 2, column 1: invalid YAML"):
        load_config(path, Config)
    path.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, Config)
