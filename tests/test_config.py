"""Typed YAML configs: unknown keys and bad values are errors with their line numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dcase9.config import (YAML_MAX_BYTES, YAML_MAX_EXPANDED, StrictModel, YamlDuplicateKeyError, YamlLimitError,
                            dump_config, load_config,
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
    assert YAML_MAX_EXPANDED > 9**4  # within bounds: 6,561 strings once expanded
    data = load_yaml_text(text)
    assert data["copy"] == {"lr": 0.1, "steps": 5} and data["merged"] == {"lr": 0.2, "steps": 5}
    assert len(data["a3"]) == 9 and data["a3"][0] is data["a3"][1]  # shared, never copied
    lines = yaml_key_lines(text)
    assert lines[("base", "lr")] == 1 and lines[("copy",)] == 2 and ("copy", "lr") not in lines
    # A bomb composes nothing for the walker: no lines, in bounded time and memory.
    assert yaml_key_lines(alias_bomb()) == {}


@pytest.mark.parametrize("text, key, lines", [
    ("a: 1\nb: 2\na: 3\n", "'a'", "at lines 1 and 3"),
    ("optim:\n  lr: 1\n  steps: 3\n  lr: 2\n", "'optim.lr'", "at lines 2 and 4"),
    ("items:\n  - {x: 1, x: 2}\n", "'items.0.x'", "twice on line 2"),
    ("1: a\ntrue: b\n", "'true', written '1' and 'true'", "at lines 1 and 2"),  # one key to the mapping loaded
    ("~: a\nnull: b\n", "'null', written '~' and 'null'", "at lines 1 and 2"),
    ("a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: *a\n  <<: *b\n", "'c.<<'", "at lines 4 and 5"),
    ("a: &a {x: 1}\nc:\n  <<: *a\n  z: 1\n  z: 2\n", "'c.z'", "at lines 4 and 5"),
])
def test_a_key_twice_in_one_mapping_is_refused_with_both_lines(text: str, key: str, lines: str,
                                                               tmp_path: Path) -> None:
    with pytest.raises(YamlDuplicateKeyError) as raised:
        load_yaml_text(text)
    assert f"duplicate key {key} {lines}" in raised.value.describe()
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: refused YAML: duplicate key {key} {lines}")):
        load_config(path, Config)


def test_merged_keys_and_keys_of_other_types_are_not_duplicates() -> None:
    # YAML's merge key inserts only the keys a mapping lacks; of several merged mappings the first wins,
    # whether or not Python interned the key's string (plain PyYAML 6.0.4 loads g.learning_rate 2 and e.y 1).
    text = ("a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 3\n"
            "d: &d\n  <<: *a\n  y: 4\ne:\n  <<: *d\n  x: 5\nf: {'1': string, 1: integer}\n"
            "p: &p {learning_rate: 1}\nq: &q {learning_rate: 2}\ng: {<<: [*p, *q]}\n")
    data = load_yaml_text(text)
    assert data["c"] == {"x": 3, "y": 1, "z": 2} and data["d"] == {"x": 1, "y": 4}
    assert data["e"] == {"x": 5, "y": 4} and data["f"] == {"1": "string", 1: "integer"}
    assert data["g"] == {"learning_rate": 1}


def test_a_character_yaml_forbids_is_named_by_line_not_by_an_in_memory_stream(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('name: run\noptimiser: "\x01"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path, Config)
    assert str(raised.value).startswith(f"{path}: line 2, column 13: invalid YAML: unacceptable character #x0001")
    assert "<unicode string>" not in str(raised.value)
