"""Typed configuration files: YAML read with `yaml.safe_load` into pydantic models that reject unknown keys.

Errors name the file, the YAML line where known, and the dotted key path at fault.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from toolkit.errors import ConfigError


class StrictModel(BaseModel):
    """Base for every config object: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file safely; syntax errors name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from exc


def yaml_key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each mapping key path in a YAML document to its 1-based line, for error messages."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (str(key.value),)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (str(i),)] = item.start_mark.line + 1
                walk(item, path + (str(i),))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def parse_model(data: Any, model: type[M], *, source: str, text: str | None = None) -> M:
    """Validate already-parsed data against `model`; errors list every bad key with its line."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        key_lines = yaml_key_lines(text) if text else {}
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            line = key_lines.get(loc) or key_lines.get(loc[:-1])
            where = f"line {line}, " if line else ""
            key = ".".join(loc) or "(top level)"
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"  {where}{key}: {message}")
        raise ConfigError(f"{source}: invalid configuration:\n" + "\n".join(problems)) from None


def load_config(path: str | Path, model: type[M]) -> M:
    """Read a YAML file into `model` (a StrictModel subclass)."""
    path = Path(path)
    data = read_yaml(path)
    return parse_model(data, model, source=str(path), text=path.read_text(encoding="utf-8"))


def dump_config(config: BaseModel) -> str:
    """YAML text of a config object (for saving next to checkpoints and outputs)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
