"""submission.yaml: who submits, which evaluation data, and up to four systems with their outputs.

See docs/submission.example.yaml for an annotated example. Relative paths are taken from the
folder of the config file. Unknown keys are errors (with their line); rules that belong to the
task (label pattern, number of systems, abbreviation length, meta fields) are checked against the
profile by `package`, so that a corrected profile decides them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from dcase9.submission.profile import result_metrics
from dcase9.config import StrictModel, parse_model, read_yaml
from dcase9.errors import ConfigError
from dcase9.files import require_file


def _renamed(data: Any, old: str, new: str) -> Any:
    """`data` with the earlier key `old` read as `new` (configs written before the rename keep working)."""
    if isinstance(data, dict) and old in data:
        if new in data:
            raise ValueError(f"give '{new}' (or its earlier name '{old}'), not both")
        data = {(new if key == old else key): value for key, value in data.items()}
    return data


class Affiliation(StrictModel):
    """As the DCASE meta template has it: abbreviation, institute, department (optional), location."""

    abbreviation: str | None = None  # default: the submitter's abbreviation (the label's second part)
    institute: str
    department: str | None = None
    location: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _earlier_names(cls, data: Any) -> Any:
        return _renamed(data, "institution", "institute")


class Author(StrictModel):
    lastname: str
    firstname: str
    email: str
    corresponding: bool = False
    affiliation: Affiliation


class Submitter(StrictModel):
    """The label's parts: the corresponding author's last name and the abbreviation of their institute."""

    lastname: str
    abbreviation: str

    @model_validator(mode="before")
    @classmethod
    def _earlier_names(cls, data: Any) -> Any:
        return _renamed(data, "institution", "abbreviation")


class ParameterSource(StrictModel):
    """Where the total parameter count comes from: checkpoint files, or a number given by hand."""

    checkpoints: list[Path] = []
    total: int | None = Field(default=None, ge=1)
    trust_checkpoint: bool = False  # unpickle code in the checkpoints (only for files you trust)

    @model_validator(mode="after")
    def _one_source(self) -> ParameterSource:
        if bool(self.checkpoints) == (self.total is not None):
            raise ValueError("give either 'checkpoints' (a list of files) or 'total' (a number)")
        return self


class SystemEntry(StrictModel):
    index: int
    name: str
    abbreviation: str
    description: dict[str, Any] = {}
    authors: list[Author] | None = None  # default: the submission's authors
    parameters: ParameterSource
    external_data: list[dict[str, Any]] = []
    pretrained_models: list[dict[str, Any]] = []
    source_code: str | None = None
    # Development-set results: a `dcase9 score` report (folder or its summary.json), or the means.
    development_report: Path | None = None
    development_results: dict[str, float] | None = None
    estimates: dict[str, Path]  # subset name (see the profile) -> folder of <id>.wav estimates

    @model_validator(mode="after")
    def _one_results_source(self) -> SystemEntry:
        if (self.development_report is None) == (self.development_results is None):
            raise ValueError("give either 'development_report' (a `dcase9 score` report) or "
                             f"'development_results' ({', '.join(result_metrics())})")
        unknown = sorted(set(self.development_results or {}) - set(result_metrics()))
        if unknown:
            raise ValueError(f"development_results: unknown metric(s) {', '.join(unknown)}; the registry of "
                             f"dcase9.metrics has {', '.join(result_metrics())}")
        return self


class SubmissionConfig(StrictModel):
    profile: str | None = None  # a shipped profile's name or a path; default dcase2024_task9
    submitter: Submitter
    authors: list[Author] = Field(min_length=1)
    technical_report: Path
    data: dict[str, Path] = {}  # subset name -> evaluation-set folder
    output_subtype: str | None = None  # sample format of the packaged WAVs; default: the profile's
    systems: list[SystemEntry] = Field(min_length=1)

    def input_paths(self) -> dict[str, Path | None]:
        """Everything the package is made from, by label (for `dcase9.files.check_no_overlap`)."""
        paths: dict[str, Path | None] = {"technical_report": self.technical_report}
        paths.update({f"data.{subset}": folder for subset, folder in self.data.items()})
        for k, system in enumerate(self.systems):
            paths.update({f"systems[{k}].estimates.{subset}": folder for subset, folder in system.estimates.items()})
            paths[f"systems[{k}].development_report"] = system.development_report
            paths.update({f"systems[{k}].parameters.checkpoints[{i}]": path
                          for i, path in enumerate(system.parameters.checkpoints)})
        return paths

    def resolve_paths(self, base: Path) -> SubmissionConfig:
        """A copy with every relative path taken from `base` (the config file's folder)."""

        def resolve(path: Path) -> Path:
            path = path.expanduser()
            return path if path.is_absolute() else base / path

        systems = []
        for system in self.systems:
            parameters = system.parameters.model_copy(
                update={"checkpoints": [resolve(p) for p in system.parameters.checkpoints]})
            systems.append(system.model_copy(update={
                "parameters": parameters,
                "development_report": resolve(system.development_report) if system.development_report else None,
                "estimates": {k: resolve(v) for k, v in system.estimates.items()},
            }))
        profile = self.profile
        if profile is not None and ("/" in profile or profile.endswith((".yaml", ".yml"))):
            profile = str(resolve(Path(profile)))
        return self.model_copy(update={
            "profile": profile,
            "technical_report": resolve(self.technical_report),
            "data": {k: resolve(v) for k, v in self.data.items()},
            "systems": systems,
        })


def load_submission_config(path: str | Path) -> SubmissionConfig:
    """Read submission.yaml; errors name the line and key."""
    path = require_file(path, "the submission config")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with submitter, authors, technical_report, data "
                          "and systems")
    config = parse_model(data, SubmissionConfig, source=str(path), text=path.read_text(encoding="utf-8"))
    return config.resolve_paths(path.resolve().parent)
