"""Typed configuration files: YAML read with a bounded `yaml.safe_load` into pydantic models that reject
unknown keys.

Every YAML document read from a user (config files, profiles, prompt files, meta files inside a
submission zip) goes through `load_yaml_text`: a safe loader with bounds on the document's size, the
number of nodes, the nesting depth and the size after alias expansion, counted while the document is
composed, so that a "billion laughs" document is refused before anything is expanded.

Errors name the file, the YAML line where known, and the dotted key path at fault.
"""

from __future__ import annotations

import copy

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from dcase9.errors import ConfigError

# Bounds on a YAML document. Real configs and meta files are a few kilobytes and a few hundred nodes;
# the pure-Python loader that can count takes about 40 microseconds a node.
YAML_MAX_BYTES = 2 * 2**20
YAML_MAX_NODES = 20_000  # scalars, sequences, mappings and aliases as written
YAML_MAX_EXPANDED = 100_000  # nodes once every alias is replaced by the node it names
YAML_MAX_DEPTH = 100  # nesting of sequences and mappings


class YamlLimitError(yaml.MarkedYAMLError):
    """A YAML document beyond the loader's bounds (size, nodes, depth, alias expansion)."""

    def __init__(self, problem: str, mark: Any = None):
        super().__init__(problem=problem, problem_mark=mark)

    def describe(self) -> str:
        where = f" (line {self.problem_mark.line + 1})" if self.problem_mark is not None else ""
        return f"{self.problem}{where}"


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts nodes, depth and expanded size while composing.

    Each node's expanded size (1 + its children's, an alias counting as the whole node it names)
    is computed once, when the node is complete, so the count costs O(nodes) however often a node
    is repeated, and the document is refused at the first node whose expansion is too large.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0
        self._expanded: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._nodes += 1
        if self._nodes > YAML_MAX_NODES:
            raise YamlLimitError(f"more than {YAML_MAX_NODES:,} YAML nodes", self.peek_event().start_mark)
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            if id(node) not in self._expanded:
                raise YamlLimitError(f"alias *{event.anchor} refers to a node that contains it (a recursive "
                                     "document)", event.start_mark)
            return node
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            raise YamlLimitError(f"nesting deeper than {YAML_MAX_DEPTH} levels", self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._expanded[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._expanded[id(key)] + self._expanded[id(value)] for key, value in node.value)
        if size > YAML_MAX_EXPANDED:
            raise YamlLimitError(f"alias expansion exceeds {YAML_MAX_EXPANDED:,} nodes (a \"billion laughs\" "
                                 "document?)", node.start_mark)
        self._expanded[id(node)] = size
        return node


def _bounded_loader(text: str) -> _BoundedLoader:
    # A character is at least one byte: only a text short enough to pass is encoded to be measured.
    size = len(text) if len(text) > YAML_MAX_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > YAML_MAX_BYTES:
        raise YamlLimitError(f"the document has more than {YAML_MAX_BYTES:,} bytes")
    return _BoundedLoader(text)


def load_yaml_text(text: str) -> Any:
    """`yaml.safe_load` within the bounds above; raises yaml.YAMLError (YamlLimitError past a bound)."""
    loader = _bounded_loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def compose_yaml(text: str) -> yaml.Node | None:
    """`yaml.compose` within the same bounds (the node tree, with marks, for line numbers)."""
    loader = _bounded_loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class StrictModel(BaseModel):
    """Base for every config object: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file safely and within bounds; errors name the file, line and column."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > YAML_MAX_BYTES:
            raise ConfigError(f"{path}: refused YAML: the file has {size:,} bytes, more than the limit of "
                              f"{YAML_MAX_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    try:
        return load_yaml_text(text)
    except YamlLimitError as exc:
        raise ConfigError(f"{path}: refused YAML: {exc.describe()}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from exc


def yaml_key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each mapping key path in a YAML document to its 1-based line, for error messages.

    A node repeated through an alias is walked once (its first key path gets the lines).
    """
    lines: dict[tuple[str, ...], int] = {}
    visited: set[int] = set()

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = path + (str(key.value),)
                lines.setdefault(sub, key.start_mark.line + 1)
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault(path + (str(i),), item.start_mark.line + 1)
                walk(item, path + (str(i),))

    try:
        root = compose_yaml(text)
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


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`: mappings merge key by key, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
