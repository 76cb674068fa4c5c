"""Problems found while packaging or checking a submission, each naming where it lies."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"

# The reasons a package (or its inputs) can fail, with a short description for the docs and
# `--json` consumers. The codes are stable: scripts and tests match on them.
CODES: dict[str, str] = {
    "bad-label": "a label does not follow the profile's pattern",
    "label-prefix": "the systems' labels disagree on lastname or institution",
    "duplicate-index": "two systems share a submission index",
    "too-many-systems": "more systems than the profile allows",
    "no-systems": "the package holds no system",
    "missing-meta": "a system has no meta-information YAML",
    "yaml-syntax": "a meta YAML file does not parse (the line is given)",
    "yaml-limit": "a meta YAML file is past the loader's bounds (size, nodes, nesting, alias expansion)",
    "yaml-duplicate-key": "a meta YAML file has a key twice in one mapping (the key and both lines are given)",
    "meta-missing": "a required meta field is absent or blank",
    "meta-type": "a meta field has the wrong type",
    "meta-value": "a meta field breaks a rule (length, pattern, range, label, one corresponding author)",
    "template-missing": "a key path of the official meta template (--template) is missing from a meta file",
    "template-extra": "a meta file has a key path that the official meta template lacks (warning)",
    "label-mismatch": "a meta file's folder, file prefix and submission.label are not the same label",
    "outside-task-folder": "an entry is not under the task folder (task9/), where the official validator looks",
    "scan-limit": "part of a PDF was not searched for secrets: it decompresses past the bound (warning)",
    "missing-report": "the technical report PDF is absent",
    "bad-report": "the technical report is not a PDF",
    "missing-output": "a mixture of the evaluation set has no output",
    "output-count": "the number of outputs differs from the official count (no data given)",
    "extra-file": "a file that the profile does not expect",
    "wrong-sample-rate": "an output has the wrong sample rate",
    "wrong-channels": "an output has the wrong number of channels",
    "wrong-length": "an output's length differs from its mixture's",
    "wrong-format": "an output is not in an accepted file format or sample format",
    "non-finite-output": "an output holds NaN or infinite samples",
    "unreadable-output": "an output is not readable audio",
    "unsafe-path": "an entry name is absolute, has '..', a backslash or a drive letter",
    "symlink": "an entry is a symbolic link",
    "duplicate-entry": "two entries have the same name",
    "name-collision": "two entries' names differ only by letter case or Unicode normalisation (one file on macOS or Windows)",
    "corrupt-entry": "an entry fails its CRC check, cannot be decompressed, or inflates past its declared size",
    "oversized-entry": "an entry is larger than the profile's limit",
    "secret": "an API key, token or password appears in an entry",
    "config": "submission.yaml names something that does not fit the profile",
    "results": "the development-set results cannot be read",
    "parameters": "the parameter count cannot be computed",
    "missing-estimates": "an estimates folder does not exist",
    "unvouched-output": "an estimate its dcase9 folder's ledger does not vouch for (another run's, or changed since)",
    "no-data": "no evaluation data given: outputs are counted, not matched (warning)",
    "clipped": "samples beyond full scale were clipped in the conversion (warning)",
}


@dataclass(frozen=True)
class Finding:
    """One problem: a stable code, a message, and where (zip entry or file, YAML line)."""

    code: str
    message: str
    entry: str | None = None
    line: int | None = None
    severity: str = ERROR

    def where(self) -> str:
        if self.entry is None:
            return ""
        return self.entry + (f":{self.line}" if self.line is not None else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = self.where()
        return f"{self.severity}: {where + ': ' if where else ''}{self.message} [{self.code}]"


def errors_in(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]
