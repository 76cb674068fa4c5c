"""The task profile: every task-specific rule of submission packaging, read from a YAML file.

The rules (label pattern, number of systems, zip layout, output audio format, meta YAML fields,
parameter-count exclusions, secret patterns) are data, so a profile corrected against the official
template changes what `dcase9 package` writes and checks without code changes. The shipped
profiles live in `submission/profiles/`; `load_profile` takes one of their names or a path.
"""

from __future__ import annotations

import re
import string
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dcase9.config import StrictModel, load_config
from dcase9.data.formats import SetKind
from dcase9.errors import ConfigError
from dcase9.metrics import registered_metrics

PROFILES_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "dcase2024_task9"

# Which placeholders each kind of template may use.
LABEL_FIELDS = ("lastname", "institution", "index")
PREFIX_FIELDS = ("lastname", "institution")
META_FIELDS = ("label", "prefix")
RESULTS_SOURCE = "results."  # `source: results.<metric>`: a mean of the development score report


def result_metrics() -> list[str]:
    """The metrics a meta file may report (`results.<metric>`): the registry's, as `score` shows them."""
    return [metric.name for metric in registered_metrics() if metric.shown and not metric.benchmarks_only]
OUTPUT_FIELDS = ("label", "prefix", "id", "file")
REPORT_FIELDS = ("prefix",)

# What a placeholder stands for when a template is turned into a pattern: one path segment.
_SEGMENT = r"[^/]+"


class Template:
    """A path or name template such as '{label}/eval_real/{id}.wav'.

    `format` fills it in; `regex` matches names it could have produced and captures the values.
    """

    def __init__(self, text: str, allowed: tuple[str, ...], where: str = ""):
        self.text = text
        where = f"{where}: " if where else ""
        self.fields: list[str] = []
        pattern = []
        loose = []  # each occurrence of a placeholder captured on its own, to find disagreements
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{where}malformed template {text!r} ({exc})") from None
        for literal, name, spec, conversion in parsed:
            pattern.append(re.escape(literal))
            loose.append(re.escape(literal))
            if name is None:
                continue
            if name not in allowed or spec or conversion:
                raise ValueError(f"{where}template {text!r} uses {{{name}}}; allowed: "
                                 + ", ".join(f"{{{a}}}" for a in allowed))
            loose.append(f"(?P<{name}__{len(loose)}>{_SEGMENT})")
            if name in self.fields:
                pattern.append(f"(?P={name})")
            else:
                self.fields.append(name)
                pattern.append(f"(?P<{name}>{_SEGMENT})")
        self.regex = re.compile("".join(pattern))
        self._loose = re.compile("".join(loose))

    def format(self, **values: Any) -> str:
        return self.text.format(**values)

    def match(self, name: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(name)
        return found.groupdict() if found else None

    def disagreement(self, name: str) -> dict[str, list[str]] | None:
        """For a name the template would produce if its repeated placeholders agreed (say a meta file
        `task9/A_B_task9_1/A_B_task9_2.meta.yaml`): each such placeholder's differing values."""
        found = self._loose.fullmatch(name)
        if found is None:
            return None
        values: dict[str, list[str]] = {}
        for group, value in found.groupdict().items():
            values.setdefault(group.rsplit("__", 1)[0], []).append(value)
        differing = {key: found for key, found in values.items() if len(set(found)) > 1}
        return differing or None

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _template_checker(allowed: tuple[str, ...], *, needs: tuple[str, ...] = (),
                      needs_one_of: tuple[str, ...] = ()) -> Any:
    """A field validator: the value is a template using only `allowed`, with the placeholders it needs.

    Checking each template as a field (not the whole profile) lets the error name its YAML line.
    """
    def check(value: str) -> str:
        template = Template(value, allowed)
        missing = [n for n in needs if n not in template.fields]
        if missing:
            raise ValueError(f"template {value!r} must contain " + ", ".join(f"{{{n}}}" for n in missing))
        if needs_one_of and not set(needs_one_of) & set(template.fields):
            raise ValueError(f"template {value!r} must contain one of "
                             + ", ".join(f"{{{n}}}" for n in needs_one_of))
        return value
    return check


class LabelRules(StrictModel):
    pattern: str
    template: str
    prefix_template: str

    _template = field_validator("template")(_template_checker(LABEL_FIELDS, needs=LABEL_FIELDS))
    _prefix = field_validator("prefix_template")(_template_checker(PREFIX_FIELDS))

    @field_validator("pattern")
    @classmethod
    def _regex_with_groups(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from None
        missing = [g for g in LABEL_FIELDS if g not in compiled.groupindex]
        if missing:
            raise ValueError(f"the pattern needs the named groups {', '.join(missing)}")
        return value


class Layout(StrictModel):
    # The folder every entry lies in (the official DCASE validator reads only entries under it);
    # every template below starts with it. None: no such folder.
    task_folder: str | None = None
    meta: str  # each system has its own meta file, so it names the label
    technical_report: str

    @field_validator("task_folder")
    @classmethod
    def _one_segment(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "{" in value):
            raise ValueError("the task folder is one plain path segment, like task9")
        return value

    @model_validator(mode="after")
    def _under_the_task_folder(self) -> Layout:
        folder = self.task_folder
        outside = [key for key, text in (("meta", self.meta), ("technical_report", self.technical_report))
                   if folder is not None and not text.startswith(folder + "/")]
        if outside:
            raise ValueError(f"{' and '.join(outside)} must start with the task folder '{folder}/'")
        return self

    _meta = field_validator("meta")(_template_checker(META_FIELDS, needs=("label",)))
    _report = field_validator("technical_report")(_template_checker(REPORT_FIELDS))


class Subset(StrictModel):
    kind: SetKind
    output: str  # one file per system and mixture
    official_count: int = Field(ge=1)

    _output = field_validator("output")(_template_checker(OUTPUT_FIELDS, needs=("label",),
                                                          needs_one_of=("id", "file")))


class AudioRules(StrictModel):
    format: str = "WAV"
    sample_rate: int = Field(ge=1)
    channels: int = Field(ge=1)
    accepted_subtypes: list[str] = Field(min_length=1)
    package_subtype: str
    same_length_as_mixture: bool = True

    @model_validator(mode="after")
    def _package_subtype_accepted(self) -> AudioRules:
        if self.package_subtype not in self.accepted_subtypes:
            raise ValueError(f"package_subtype {self.package_subtype} is not one of accepted_subtypes")
        return self


class ParameterCountRules(StrictModel):
    exclude: list[str] = []


FieldType = Literal["string", "integer", "number", "bool", "list", "mapping"]


class FieldRule(StrictModel):
    """What one value of the meta YAML must be, and where `package` takes it from."""

    type: FieldType
    required: bool = True
    source: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    equals: str | None = None
    one_of: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = None
    max_items: int | None = None
    decimals: int | None = Field(default=None, ge=0)  # a number is written rounded to this many decimals
    write_null: bool = False  # without a value, the key is written as null (the template keeps every key)
    one_true: str | None = None  # a list of mappings: exactly one item has this field true
    fields: dict[str, FieldRule] | None = None
    items: FieldRule | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FieldRule:
        if self.fields is not None and self.type != "mapping":
            raise ValueError("'fields' belongs to a mapping")
        if self.items is not None and self.type != "list":
            raise ValueError("'items' belongs to a list")
        if self.decimals is not None and self.type != "number":
            raise ValueError("'decimals' belongs to a number")
        if self.one_true is not None and (self.type != "list" or self.items is None or self.items.type != "mapping"):
            raise ValueError("'one_true' belongs to a list of mappings")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a regular expression ({exc})") from None
        if self.equals is not None:
            Template(self.equals, META_FIELDS, "equals")  # placeholders known to validate_meta
        if self.source is not None and self.source.startswith(RESULTS_SOURCE):
            known = result_metrics()
            if self.source[len(RESULTS_SOURCE):] not in known:
                raise ValueError(f"source {self.source}: no such metric; {RESULTS_SOURCE}<metric> names one of the "
                                 f"registry of dcase9.metrics: {', '.join(known)}")
        return self


class SecretRules(StrictModel):
    environment_names: list[str] = []
    min_value_length: int = Field(default=8, ge=4)
    patterns: dict[str, str] = {}

    @field_validator("patterns")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            try:
                re.compile(pattern.encode())
            except re.error as exc:
                raise ValueError(f"pattern {name!r} is not a regular expression ({exc})") from None
        return value


class Profile(StrictModel):
    name: str
    title: str
    label: LabelRules
    max_systems: int = Field(ge=1)
    layout: Layout
    subsets: dict[str, Subset] = Field(min_length=1)
    audio: AudioRules
    development_set: SetKind = SetKind.VALIDATION
    parameter_count: ParameterCountRules = ParameterCountRules()
    meta: dict[str, FieldRule] = Field(min_length=1)
    secrets: SecretRules = SecretRules()
    max_entry_bytes: int = Field(default=100 * 2**20, ge=1)

    @model_validator(mode="after")
    def _outputs_under_the_task_folder(self) -> Profile:
        folder = self.layout.task_folder
        outside = [f"subsets.{name}.output" for name, subset in self.subsets.items()
                   if folder is not None and not subset.output.startswith(folder + "/")]
        if outside:
            raise ValueError(f"{', '.join(outside)} must start with the task folder '{folder}/' (layout.task_folder)")
        return self

    @cached_property
    def templates(self) -> Templates:
        return Templates(self)

    def label_of(self, lastname: str, institution: str, index: int) -> str:
        return self.label.template.format(lastname=lastname, institution=institution, index=index)

    def parse_label(self, label: str) -> dict[str, str] | None:
        """The label's lastname, institution and index, or None if it does not follow the pattern."""
        found = re.fullmatch(self.label.pattern, label)
        return {k: found.group(k) for k in LABEL_FIELDS} if found else None

    def label_problem(self, label: str) -> str | None:
        """Why `label` is not a label of this task, in the terms of its template; None if it is one.

        A template made of '_'-separated parts (each a placeholder or literal text, as DCASE labels
        are) gets a reason per part; otherwise the pattern is quoted.
        """
        if self.parse_label(label) is not None:
            return None
        template = self.label.template
        expected = template.split("_")
        fallback = f"does not match {self.label.pattern} (expected {template})"
        if any(("{" in part) and not re.fullmatch(r"\{\w+\}", part) for part in expected):
            return fallback
        parts = label.split("_")
        if len(parts) != len(expected):
            return f"has {len(parts)} '_'-separated part(s); a label has {len(expected)}: {template}"
        for number, (part, wanted) in enumerate(zip(parts, expected, strict=True), start=1):
            if not wanted.startswith("{"):
                if part != wanted:
                    return f"part {number} is {part!r}; it must be {wanted!r} ({template})"
                continue
            name = wanted[1:-1]
            if not part:
                return f"part {number} ({name}) is empty"
            odd = next((ch for ch in part if ch.isspace() or ch in "./\\"), None)
            if odd is not None:
                return f"part {number} ({name}) contains {odd!r}"
            if name == "index" and not (part.isdigit() and 1 <= int(part) <= self.max_systems):
                return f"the index {part!r} is not a number from 1 to {self.max_systems}"
        return fallback

    def prefix_of(self, label: str) -> str | None:
        parts = self.parse_label(label)
        return None if parts is None else self.label.prefix_template.format(
            lastname=parts["lastname"], institution=parts["institution"])

    def subset_of_kind(self, kind: SetKind) -> str | None:
        return next((name for name, subset in self.subsets.items() if subset.kind is kind), None)


class Templates:
    """The profile's templates, parsed (each was checked when the profile was read)."""

    def __init__(self, profile: Profile):
        self.meta = Template(profile.layout.meta, META_FIELDS, "layout.meta")
        self.report = Template(profile.layout.technical_report, REPORT_FIELDS, "layout.technical_report")
        self.outputs = {name: Template(subset.output, OUTPUT_FIELDS, f"subsets.{name}.output")
                        for name, subset in profile.subsets.items()}


def profile_path(name_or_path: str | Path | None) -> Path:
    """A shipped profile's file for a bare name, else the path itself."""
    if name_or_path is None:
        name_or_path = DEFAULT_PROFILE
    text = str(name_or_path)
    if "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml")):
        path = PROFILES_DIR / f"{text}.yaml"
        if not path.is_file():
            shipped = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
            raise ConfigError(f"unknown submission profile {text!r} (shipped: {shipped}; or give a path)")
        return path
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"submission profile not found: {path}")
    return path


def load_profile(name_or_path: str | Path | Profile | None = None) -> Profile:
    """Read and validate a profile: a shipped name (default: dcase2024_task9), a path, or a Profile."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    return load_config(profile_path(name_or_path), Profile)
