"""The meta-information YAML of a system: its values, how it is written, and how it is validated.

Both directions follow the profile's `meta` rules: `build_meta` fills each field from its `source`
(a value of submission.yaml or one computed here: the parameter count from the checkpoints, the
development results from a `dcase9 score` report), and `validate_meta` checks a parsed YAML
document against the same rules, naming the key path and YAML line of every problem.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dcase9.submission.findings import Finding
from dcase9.submission.profile import FieldRule, Profile
from dcase9.version import __version__
from dcase9.config import YamlDuplicateKeyError, YamlLimitError, load_yaml_text, yaml_key_lines, yaml_problem
from dcase9.errors import Dcase9Error

# --------------------------------------------------------------------------------------------
# Parameter count


@dataclass
class ParameterCount:
    total: int
    by_prefix: dict[str, int] = field(default_factory=dict)  # first key component -> count
    excluded: int = 0  # elements of floating-point tensors left out by the exclusion globs


def is_excluded(key: str, exclude: Iterable[str]) -> bool:
    # The leading '.' lets '*.stft.*' match a module at the top level ('stft.conv_real.weight') too.
    dotted = "." + key
    return any(fnmatch.fnmatchcase(dotted, pattern) for pattern in exclude)


def count_parameters(state_dict: Mapping[str, Any], exclude: Iterable[str]) -> ParameterCount:
    """Elements of the floating-point tensors of a state dict, less those matching `exclude`.

    Integer and boolean tensors (step counters, index buffers) are never parameters.
    """
    import torch

    exclude = tuple(exclude)
    count = ParameterCount(total=0)
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or not (value.is_floating_point() or value.is_complex()):
            continue
        if is_excluded(key, exclude):
            count.excluded += value.numel()
            continue
        count.total += value.numel()
        prefix = key.split(".", 1)[0]
        count.by_prefix[prefix] = count.by_prefix.get(prefix, 0) + value.numel()
    return count


def count_checkpoint_parameters(paths: Iterable[Path], exclude: Iterable[str], *,
                                trust: bool = False) -> ParameterCount:
    """The parameter count summed over checkpoint files (say, a separator and a separate encoder)."""
    from dcase9.models.checkpoints import read_checkpoint, state_dict_of

    exclude = tuple(exclude)
    total = ParameterCount(total=0)
    for path in paths:
        try:
            part = count_parameters(state_dict_of(read_checkpoint(path, trust=trust)), exclude)
        except Dcase9Error as exc:
            raise Dcase9Error(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from exc
        total.total += part.total
        total.excluded += part.excluded
        for prefix, n in part.by_prefix.items():
            total.by_prefix[prefix] = total.by_prefix.get(prefix, 0) + n
    return total


# --------------------------------------------------------------------------------------------
# Development-set results


def read_development_results(report: Path, expected_kind: str) -> tuple[dict[str, float], list[Finding]]:
    """The means of a `dcase9 score` report (its folder or summary.json), and what is wrong with it.

    The report must cover the whole development set: a partial score is not a development result.
    """
    path = report / "summary.json" if report.is_dir() else report
    where = str(path)
    if not path.is_file():
        return {}, [Finding("results", "score report not found (run `dcase9 score --out REPORT` on the "
                            f"{expected_kind} set)", where)]
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [Finding("results", f"cannot read ({exc})", where)]
    except json.JSONDecodeError as exc:
        return {}, [Finding("results", f"invalid JSON: {exc.msg}", where, exc.lineno)]
    if not isinstance(summary, dict) or not isinstance(summary.get("mean"), dict):
        return {}, [Finding("results", "not a `dcase9 score` summary (no 'mean')", where)]
    findings = []
    kind = (summary.get("dataset") or {}).get("kind")
    if kind != expected_kind:
        findings.append(Finding("results", f"the report scores a {kind or 'unknown'} set; development results "
                                f"come from the {expected_kind} set", where))
    if summary.get("complete") is not True:
        findings.append(Finding("results", f"the report is incomplete ({summary.get('scored')} of "
                                f"{(summary.get('dataset') or {}).get('mixtures')} mixtures scored, or estimate "
                                "problems): development results must cover the whole set", where))
    means = {name: float(value) for name, value in summary["mean"].items()
             if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}
    return means, findings


# --------------------------------------------------------------------------------------------
# Building the document

_ABSENT = object()


def _lookup(values: Mapping[str, Any], source: str) -> Any:
    value = values.get(source, _ABSENT)
    return _ABSENT if value is None else value


def build_value(rule: FieldRule, values: Mapping[str, Any]) -> Any:
    """A field's value per its rule; `_ABSENT` when it has none (the field is then left out, or
    written as null with `write_null`).

    A mapping starts from its source mapping (free-form keys kept, in their order) and gets each
    listed field that the source did not set, in the profile's order. A list of mappings builds
    each item the same way from the item's own keys.
    """
    value = _lookup(values, rule.source) if rule.source else _ABSENT
    if rule.decimals is not None and isinstance(value, float) and math.isfinite(value):
        return round(value, rule.decimals)
    if rule.type == "list" and rule.items is not None and isinstance(value, list):
        return [_build_mapping(rule.items, item, {}) if isinstance(item, Mapping) else item for item in value]
    if rule.type != "mapping" or rule.fields is None:
        return value
    return _build_mapping(rule, value if isinstance(value, Mapping) else {}, values)


def _build_mapping(rule: FieldRule, given: Mapping[str, Any], values: Mapping[str, Any]) -> Any:
    if rule.type != "mapping" or rule.fields is None:
        return dict(given)
    given = dict(given)
    built: dict[str, Any] = {}
    for name, sub in rule.fields.items():
        if name in given:
            item = given.pop(name)
            built[name] = _build_mapping(sub, item, values) if isinstance(item, Mapping) else item
            continue
        sub_value = build_value(sub, values)
        if sub_value is not _ABSENT:
            built[name] = sub_value
        elif sub.write_null:
            built[name] = None
    built.update(given)
    return built


def build_meta(schema: Mapping[str, FieldRule], values: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, rule in schema.items():
        value = build_value(rule, values)
        if value is not _ABSENT:
            document[name] = value
        elif rule.write_null:
            document[name] = None
    return document


def sampling_rate_text(rate: float) -> str:
    """A sampling rate as the DCASE template writes it: 16000 -> '16kHz', 44100 -> '44.1kHz'."""
    return f"{rate / 1000:g}kHz"


def meta_yaml_text(document: Mapping[str, Any], label: str, profile: Profile) -> str:
    header = (f"# {label}: meta information for {profile.title}\n"
              f"# Written by dcase9 {__version__} (profile {profile.name}).\n")
    return header + yaml.safe_dump(_plain(document), sort_keys=False, allow_unicode=True,
                                   default_flow_style=False, width=100)


def _plain(value: Any) -> Any:
    """Plain YAML types only (paths and other objects from the config become strings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# --------------------------------------------------------------------------------------------
# Validating a document


def parse_meta(text: str, entry: str) -> tuple[Any, list[Finding]]:
    """The document, read with the bounded safe loader; a syntax error gives its line and column, a
    document past the loader's bounds (size, nodes, nesting, alias expansion) a `yaml-limit` finding,
    a key written twice in one mapping a `yaml-duplicate-key` finding (at its second line)."""
    try:
        return load_yaml_text(text), []
    except YamlDuplicateKeyError as exc:
        return None, [Finding("yaml-duplicate-key", f"refused YAML: {exc.describe()}", entry, exc.second_line)]
    except YamlLimitError as exc:
        mark = exc.problem_mark
        return None, [Finding("yaml-limit", f"refused YAML: {exc.problem}", entry,
                              mark.line + 1 if mark is not None else None)]
    except yaml.YAMLError as exc:
        problem, line, column = yaml_problem(exc, text)
        message = f"invalid YAML: {problem}" + (f", column {column}" if column is not None else "")
        return None, [Finding("yaml-syntax", message, entry, line)]


_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "bool": "true or false",
               "list": "a list", "mapping": "a mapping"}


def _has_type(value: Any, type_name: str) -> bool:
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def line_of(lines: Mapping[tuple[str, ...], int], path: tuple[str, ...]) -> int | None:
    """The line of a key path (see `yaml_key_lines`), or of its nearest ancestor that is written."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


class _MetaValidator:
    def __init__(self, entry: str, text: str | None, context: Mapping[str, str],
                 failed_sources: set[str] | None = None):
        self.entry = entry
        self.lines = yaml_key_lines(text) if text else {}
        self.context = context
        self.failed_sources = failed_sources or set()
        self.findings: list[Finding] = []

    def report(self, code: str, path: tuple[str, ...], message: str) -> None:
        key = ".".join(path) or "(document)"
        self.findings.append(Finding(code, f"{key}: {message}", self.entry, line_of(self.lines, path)))

    def check(self, value: Any, rule: FieldRule, path: tuple[str, ...]) -> None:
        if not _has_type(value, rule.type):
            self.report("meta-type", path, f"{_describe(value)} is not {_TYPE_NAMES[rule.type]}")
            return
        if rule.type == "string":
            self.check_string(value, rule, path)
        elif rule.type in ("integer", "number"):
            if rule.minimum is not None and value < rule.minimum:
                self.report("meta-value", path, f"{value} is below the minimum {rule.minimum:g}")
            if rule.maximum is not None and value > rule.maximum:
                self.report("meta-value", path, f"{value} is above the maximum {rule.maximum:g}")
        elif rule.type == "list":
            if rule.one_true is not None:
                self.check_one_true(value, rule.one_true, path)
            if rule.min_items is not None and len(value) < rule.min_items:
                self.report("meta-value" if value else "meta-missing", path,
                            f"{len(value)} item(s), at least {rule.min_items} required")
            if rule.max_items is not None and len(value) > rule.max_items:
                self.report("meta-value", path, f"{len(value)} items, at most {rule.max_items} allowed")
            if rule.items is not None:
                for i, item in enumerate(value):
                    self.check(item, rule.items, path + (str(i),))
        elif rule.type == "mapping" and rule.fields:
            self.check_fields(value, rule.fields, path)
        if rule.one_of is not None and value not in rule.one_of:
            self.report("meta-value", path, f"{_describe(value)} is not one of {rule.one_of}")

    def check_one_true(self, items: list[Any], name: str, path: tuple[str, ...]) -> None:
        marked = [str(i) for i, item in enumerate(items) if isinstance(item, Mapping) and item.get(name) is True]
        if len(marked) != 1 and items:
            found = f"items {', '.join(marked)} have it" if marked else "none has it"
            self.report("meta-value", path, f"exactly one item must have {name}: true ({found})")

    def check_string(self, value: str, rule: FieldRule, path: tuple[str, ...]) -> None:
        if rule.min_length is not None and len(value) < rule.min_length:
            self.report("meta-value", path, f"{_describe(value)} is shorter than {rule.min_length} characters")
        if rule.max_length is not None and len(value) > rule.max_length:
            self.report("meta-value", path, f"{_describe(value)} has {len(value)} characters, at most "
                        f"{rule.max_length} allowed")
        if rule.pattern is not None and not re.fullmatch(rule.pattern, value):
            self.report("meta-value", path, f"{_describe(value)} does not match {rule.pattern}")
        if rule.equals is not None:
            wanted = rule.equals.format(**self.context)
            if value != wanted:
                self.report("meta-value", path, f"{_describe(value)} should be {wanted!r}")

    def check_fields(self, mapping: Mapping[str, Any], fields: Mapping[str, FieldRule], path: tuple[str, ...]) -> None:
        for name, rule in fields.items():
            value = mapping.get(name)
            blank = value is None or (isinstance(value, str) and not value.strip())
            if blank:
                if rule.required and not (rule.source is not None and rule.source in self.failed_sources):
                    state = "is blank" if name in mapping else "is missing"
                    self.report("meta-missing", path + (name,), f"required field {state}")
                continue
            self.check(value, rule, path + (name,))


def validate_meta(document: Any, schema: Mapping[str, FieldRule], *, entry: str, text: str | None = None,
                  context: Mapping[str, str] | None = None, failed_sources: Collection[str] = ()) -> list[Finding]:
    """Every way `document` breaks the profile's meta rules; `context` fills `equals` templates.
    `failed_sources`: values whose source already failed with a finding of its own (a checkpoint that
    cannot be counted, a report that cannot be read): their fields are not reported again as missing."""
    validator = _MetaValidator(entry, text, context or {}, set(failed_sources))
    if not isinstance(document, dict):
        validator.report("meta-type", (), f"the document is {_describe(document)}, not a mapping of "
                         + ", ".join(schema))
        return validator.findings
    validator.check_fields(document, schema, ())
    return validator.findings
