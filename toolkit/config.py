"""Typed configuration files: YAML read with a bounded `yaml.safe_load` into pydantic models that reject
unknown keys.

Every YAML document read from a user (config files, profiles, prompt files, meta files inside a
submission zip) goes through `load_yaml_text`: a safe loader with bounds on the document's size, the
number of nodes, the nesting depth and the size after alias expansion, counted while the document is
composed, so that a "billion laughs" document is refused before anything is expanded. It also
refuses a mapping with two equal keys, which YAML forbids and a plain loader resolves silently by
keeping the last one.

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


# Keys that YAML gives a meaning rather than a value: `<<` merges mappings in, `=` is a default value.
_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"


class YamlRefusal(yaml.MarkedYAMLError):
    """A document that parses but that the loader refuses; `describe()` says why, with its line(s)."""

    def describe(self) -> str:
        where = f" (line {self.problem_mark.line + 1})" if self.problem_mark is not None else ""
        return f"{self.problem}{where}"


class YamlLimitError(YamlRefusal):
    """A YAML document beyond the loader's bounds (size, nodes, depth, alias expansion)."""

    def __init__(self, problem: str, mark: Any = None):
        super().__init__(problem=problem, problem_mark=mark)


class YamlDuplicateKeyError(YamlRefusal):
    """A mapping with the same key twice (`key` is its dotted path). YAML requires unique keys; a
    loader that keeps the last value would hide the first line, an edit made there, without a word."""

    def __init__(self, key: str, first: yaml.Node, second: yaml.Node):
        spelled = "" if first.value == second.value else f", written {first.value!r} and {second.value!r}"
        super().__init__(context=f"first at line {first.start_mark.line + 1}", context_mark=first.start_mark,
                         problem=f"duplicate key {key!r}{spelled}", problem_mark=second.start_mark)
        self.key, self.merge = key, second.tag == _MERGE_TAG
        self.first_line, self.second_line = first.start_mark.line + 1, second.start_mark.line + 1

    def where(self) -> str:
        if self.first_line == self.second_line:
            return f"twice on line {self.first_line}"
        return f"at lines {self.first_line} and {self.second_line}"

    def describe(self) -> str:
        if self.merge:
            return (f"{self.problem} {self.where()} (a mapping has one merge key: merge several mappings with "
                    "`<<: [*first, *second]`)")
        return (f"{self.problem} {self.where()} (a mapping's keys must be unique: remove one; a reader that "
                f"keeps the last would silently ignore the first)")


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts nodes, depth and expanded size while composing, and refuses a mapping
    with two equal keys.

    Keys are equal when their values are (`1`, `0x1` and `true` are one key to the Python mapping the
    document becomes). Keys merged in with `<<` are not duplicates: YAML's merge key inserts only the
    keys the mapping does not have itself, and earlier merged mappings win over later ones
    (`flatten_mapping`); two `<<` keys in one mapping are (merge several with `<<: [*a, *b]`).

    Each node's expanded size (1 + its children's, an alias counting as the whole node it names)
    is computed once, when the node is complete, so the count costs O(nodes) however often a node
    is repeated, and the document is refused at the first node whose expansion is too large.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0
        self._expanded: dict[int, int] = {}
        self._path: list[str] = []  # key path of the node being composed, for messages

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
        # A mapping's value is composed with its key node as `index`, a sequence's item with its position.
        step = str(index.value) if isinstance(index, yaml.ScalarNode) else str(index) if isinstance(index, int) \
            else None
        if step is not None:
            self._path.append(step)
        try:
            node = super().compose_node(parent, index)
            if isinstance(node, yaml.MappingNode):
                self._refuse_duplicate_keys(node)
        finally:
            self._depth -= 1
            if step is not None:
                self._path.pop()
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

    def _key(self, node: yaml.Node) -> Any:
        """What a key is to the mapping the document becomes: its value (`1`, `0x1` and `true` are one key).
        A key that is not a scalar stands for itself (construction refuses it: it is unhashable)."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _MERGE_TAG:
                return (_MERGE_TAG,)  # no scalar constructs to a tuple
            if node.tag == _VALUE_TAG:
                return node.value  # `=` is read as the string "="
            key = self.construct_object(node)  # cached: built once
            try:
                hash(key)
                return key
            except TypeError:
                pass
        return ("node", id(node))

    def _refuse_duplicate_keys(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            first = seen.setdefault(self._key(key_node), key_node)
            if first is not key_node:
                raise YamlDuplicateKeyError(".".join([*self._path, str(key_node.value)]), first, key_node)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Resolve `<<` as YAML's merge key is specified: the mapping's own keys win over merged ones,
        and of several merged mappings (`<<: [*a, *b]`) the earlier wins, at any depth of merges.
        (PyYAML 6.0.4 tells merged keys apart by the identity of their string objects, so whether
        the earlier or the later value wins depends on whether Python interned the key.)"""
        own, sources = [], []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                if key_node.tag == _VALUE_TAG:
                    key_node.tag = "tag:yaml.org,2002:str"
                own.append((key_node, value_node))
                continue
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in merged:
                if not isinstance(source, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"expected a mapping or a list of mappings to merge, but found {source.id}", source.start_mark)
                sources.append(source)
        if not sources:
            return
        taken = {self._key(key_node) for key_node, _ in own}
        inserted = []
        for source in sources:
            self.flatten_mapping(source)
            for key_node, value_node in source.value:
                key = self._key(key_node)
                if key not in taken:
                    taken.add(key)
                    inserted.append((key_node, value_node))
        node.value = inserted + own


def _bounded_loader(text: str) -> _BoundedLoader:
    # A character is at least one byte: only a text short enough to pass is encoded to be measured.
    size = len(text) if len(text) > YAML_MAX_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > YAML_MAX_BYTES:
        raise YamlLimitError(f"the document has more than {YAML_MAX_BYTES:,} bytes")
    return _BoundedLoader(text)


def load_yaml_text(text: str) -> Any:
    """`yaml.safe_load` within the bounds above, refusing duplicate keys; raises yaml.YAMLError
    (YamlLimitError past a bound, YamlDuplicateKeyError for a key written twice in one mapping)."""
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
    """Parse a YAML file safely, within bounds and without duplicate keys; errors name the file, line
    and column (a duplicate key: the key and both lines)."""
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
    except YamlRefusal as exc:
        raise ConfigError(f"{path}: refused YAML: {exc.describe()}") from None
    except yaml.YAMLError as exc:
        problem, line, column = yaml_problem(exc, text)
        where = f" line {line}, column {column}:" if line is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {problem}") from None


def yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[str, int | None, int | None]:
    """What is wrong with a document that does not parse, and where (1-based line and column, where
    known). PyYAML's own text says `in "<unicode string>"`, its name for a document in memory, in
    place of the file: that is left out, the caller names the file."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow, found by position
        start = text.rfind("\n", 0, exc.position) + 1
        return str(exc).splitlines()[0], text.count("\n", 0, exc.position) + 1, exc.position - start + 1
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    message = problem + (f" ({context})" if context else "")
    return (message, mark.line + 1, mark.column + 1) if mark is not None else (message, None, None)


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


def nested(dotted: str, value: Any) -> dict[str, Any]:
    """`"a.b.c"`, value -> `{"a": {"b": {"c": value}}}` (a layer for `deep_merge`)."""
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value  # type: ignore[return-value]


def parse_assignment(text: str) -> dict[str, Any]:
    """`a.b.c=value` as `{"a": {"b": {"c": value}}}`; the value is read as YAML (`1e-4`, `[1, 2]`, `null`)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects KEY.PATH=VALUE, got {text!r}")
    try:
        value = load_yaml_text(raw) if raw.strip() else ""
    except YamlRefusal as exc:
        raise ConfigError(f"--set {key}: the value {raw!r} is refused: {exc.describe()}") from None
    except yaml.YAMLError as exc:
        problem, _, column = yaml_problem(exc, raw)
        where = f" at column {column}" if column is not None else ""
        raise ConfigError(f"--set {key}: the value {raw!r} is not valid YAML{where}: {problem}") from None
    return nested(key, value)
