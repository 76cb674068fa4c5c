"""Typed YAML configs: unknown keys and bad values are errors with their line numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dcase9.config import (YAML_MAX_BYTES, YAML_MAX_EXPANDED, StrictModel, YamlLimitError, dump_config, load_config,
                            load_yaml_text, yaml_key_lines)
from dcase9.errors import ConfigError


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


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs" document: each level lists the previous one `width` times."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, message", [
    (alias_bomb(), "alias expansion exceeds 100,000 nodes"),
    ("a: &a [1, *a]\n", "alias *a refers to a node that contains it"),
    ("x: " + "[" * 150 + "]" * 150 + "\n", "nesting deeper than 100 levels"),
    ("[" + "1, " * 20_001 + "]\n", "more than 20,000 YAML nodes"),
])
def test_hostile_yaml_is_refused_at_once_with_its_reason(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="refused YAML") as raised:
        load_config(path, Config)
    assert str(path) in str(raised.value) and message in str(raised.value)
    with pytest.raises(YamlLimitError, match=re.escape(message)):
        load_yaml_text(text)


def test_oversized_yaml_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"name: " + b"x" * YAML_MAX_BYTES + b"\n")
    with pytest.raises(ConfigError, match=f"more than the limit of {YAML_MAX_BYTES:,}"):
        load_config(path, Config)
    with pytest.raises(YamlLimitError, match="more than"):
        load_yaml_text("name: " + "x" * YAML_MAX_BYTES)


def test_aliases_within_bounds_still_load_and_key_lines_walk_them_once() -> None:
    text = "base: &b {lr: 0.1, steps: 5}\ncopy: *b\nmerged: {<<: *b, lr: 0.2}\n" + alias_bomb(levels=4, width=9)
    assert 9**4 < YAML_MAX_EXPANDED  # within bounds: 6,561 strings once expanded
    data = load_yaml_text(text)
    assert data["copy"] == {"lr": 0.1, "steps": 5} and data["merged"] == {"lr": 0.2, "steps": 5}
    assert len(data["a3"]) == 9 and data["a3"][0] is data["a3"][1]  # shared, never copied
    lines = yaml_key_lines(text)
    assert lines[("base", "lr")] == 1 and lines[("copy",)] == 2 and ("copy", "lr") not in lines
    # A bomb composes nothing for the walker: no lines, in bounded time and memory.
    assert yaml_key_lines(alias_bomb()) == {}
