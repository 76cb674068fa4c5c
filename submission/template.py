"""`dcase9 package --template FILE`: a task's official meta template, compared key path by key path.

Participants download the meta-information template of their task (a YAML file with comments);
every key path of it should appear in each system's meta file. `compare_with_template` names
every key path of the template that a meta document lacks (an error) and every one the document
has beyond the template (a warning). In a list, the template's first item describes every item.
Values are not compared: the template holds examples, the meta file the system's own values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcase9.submission.findings import ERROR, WARNING, Finding
from dcase9.submission.meta import line_of
from dcase9.config import read_yaml, yaml_key_lines
from dcase9.errors import ConfigError


def read_template(path: str | Path) -> dict[str, Any]:
    """The template as a mapping (read with the bounded safe loader); ConfigError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"meta template not found: {path}")
    document = read_yaml(path)
    if not isinstance(document, dict) or not document:
        raise ConfigError(f"{path}: a meta template is a YAML mapping (submission:, system:, results:)")
    return document


def compare_with_template(document: Any, template: Mapping[str, Any], *, entry: str,
                          text: str | None = None) -> list[Finding]:
    """Missing key paths (errors) and extra ones (warnings) of `document` against `template`."""
    lines = yaml_key_lines(text) if text else {}
    findings: list[Finding] = []

    def add(code: str, severity: str, path: tuple[str, ...], message: str, at: tuple[str, ...]) -> None:
        findings.append(Finding(code, f"{'.'.join(path)}: {message}", entry, line_of(lines, at), severity))

    def compare(wanted: Any, given: Any, path: tuple[str, ...]) -> None:
        if isinstance(wanted, Mapping):
            present = given if isinstance(given, Mapping) else {}
            for key in wanted:
                if key not in present:
                    add("template-missing", ERROR, path + (str(key),), "in the template, missing here", path)
                else:
                    compare(wanted[key], present[key], path + (str(key),))
            for key in present:
                if key not in wanted:
                    add("template-extra", WARNING, path + (str(key),), "not in the template",
                        path + (str(key),))
        elif isinstance(wanted, list) and wanted and isinstance(wanted[0], (Mapping, list)) \
                and isinstance(given, list):
            for index, item in enumerate(given):
                compare(wanted[0], item, path + (str(index),))

    compare(template, document, ())
    return findings
