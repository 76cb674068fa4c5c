"""`dcase9 validate`: check an evaluation-set folder and report every problem by file, row and field."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dcase9.audio import SAMPLE_RATE, non_finite_count, wav_truncation
from dcase9.data.formats import (MIN_AUDIO_SECONDS, SNR_PLAUSIBLE_DB, DataSet, Issue, SetKind, output_name_too_long,
                                  parse_dataset)
from dcase9.data.items import ordered_map
from dcase9.files import describe_non_file

EXPECTED_SECONDS = 10.0  # every official clip and mixture is 10 s
DURATION_TOLERANCE = 0.01  # relative: beyond 1% off it is an error (where duration matters)


@dataclass
class AudioFacts:
    """What was learnt from one audio file."""

    path: Path
    frames: int | None = None
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (severity, code, message)


@dataclass(repr=False)
class ValidationReport:
    """What `validate` found. `usable`: no errors; `usable_strictly`: no warnings either."""

    dataset: DataSet | None
    issues: list[Issue]
    files_checked: int = 0

    def __repr__(self) -> str:  # short: the data set can hold thousands of mixtures
        what = self.dataset.describe() if self.dataset is not None else "no data set"
        return (f"ValidationReport({what}: {len(self.errors)} error(s), {len(self.warnings)} warning(s), "
                f"{self.files_checked} file(s) checked, usable={self.usable})")

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def usable(self) -> bool:
        """No errors: `infer`, `mix` and `score` can run on the set."""
        return not self.errors

    @property
    def usable_strictly(self) -> bool:
        """No errors and no warnings (`validate --strict`)."""
        return self.usable and not self.warnings

    def counts_by_code(self) -> list[tuple[str, str, int]]:
        counter = collections.Counter((i.severity, i.code) for i in self.issues)
        return sorted(((sev, code, n) for (sev, code), n in counter.items()), key=lambda t: (t[0], -t[2]))

    def to_json(self, strict: bool = False) -> dict[str, Any]:
        ds = self.dataset
        return {
            "usable": self.usable_strictly if strict else self.usable,
            "strict": strict,
            "kind": ds.kind.value if ds else None,
            "root": str(ds.root) if ds else None,
            "csv": str(ds.csv_path) if ds else None,
            "audio_dir": str(ds.audio_dir) if ds else None,
            "columns": ds.columns if ds else {},
            "mixtures": len(ds.mixtures) if ds else 0,
            "files_checked": self.files_checked,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "issues": [{"severity": i.severity, "code": i.code, "message": i.message, "file": i.file,
                        "row": i.row, "field": i.field} for i in self.issues],
        }


def inspect_audio(path: Path, expected_frames: int | None, duration_is_error: bool) -> AudioFacts:
    facts = AudioFacts(path)
    problem = describe_non_file(path)
    if problem is not None:
        facts.problems.append(("error", "audio-missing", f"audio {problem}"))
        return facts
    try:
        info = sf.info(str(path))
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        facts.problems.append(("error", "audio-unreadable", f"unreadable audio ({exc})"))
        return facts
    facts.frames = info.frames
    truncated = wav_truncation(path)
    if truncated is not None:
        facts.problems.append(("error", "audio-truncated", truncated))
    if info.samplerate != SAMPLE_RATE:
        facts.problems.append(("error", "audio-rate", f"sample rate {info.samplerate} Hz, expected {SAMPLE_RATE}"))
    if info.channels != 1:
        facts.problems.append(("error", "audio-channels", f"{info.channels} channels, expected mono"))
    if (expected_frames is not None and info.samplerate == SAMPLE_RATE and info.frames != expected_frames
            and truncated is None):  # a truncated file is short for that reason alone
        seconds = info.frames / info.samplerate
        far_off = abs(info.frames - expected_frames) > DURATION_TOLERANCE * expected_frames
        severity = "error" if far_off and duration_is_error else "warning"
        facts.problems.append((severity, "audio-duration",
                               f"{seconds:.3f} s ({info.frames} samples), expected "
                               f"{expected_frames / SAMPLE_RATE:g} s ({expected_frames} samples)"))
    if data.size == 0:
        facts.problems.append(("error", "audio-empty", "no samples"))
    elif info.frames < MIN_AUDIO_SECONDS * info.samplerate:
        facts.problems.append(("error", "audio-too-short", f"{info.frames} samples: shorter than "
                               f"{MIN_AUDIO_SECONDS:g} s, too short to separate"))
    elif not np.all(np.isfinite(data)):
        facts.problems.append(("error", "audio-nonfinite", f"{non_finite_count(data)} NaN or infinite samples"))
    elif not np.any(data):
        facts.problems.append(("error", "audio-silent", "all samples are zero"))
    return facts


def validate_dataset(data: str | Path, kind: SetKind | str | None = None, csv_path: str | Path | None = None,
                     *, check_audio: bool = True, expected_seconds: float | None = EXPECTED_SECONDS,
                     workers: int = 2) -> ValidationReport:
    """Check metadata and (unless `check_audio=False`) every referenced audio file."""
    dataset, issues = parse_dataset(data, kind, csv_path)
    report = ValidationReport(dataset, list(issues))
    for spec in dataset.mixtures:  # what infer, mix and score refuse row by row (ItemLoader)
        too_long = output_name_too_long(spec.id)
        if too_long is not None:
            report.issues.append(Issue("error", "name-too-long", too_long, str(dataset.csv_path), spec.row))
        if spec.snr is not None and abs(spec.snr) > SNR_PLAUSIBLE_DB:
            report.issues.append(Issue("error", "snr-implausible", f"SNR {spec.snr} dB is beyond "
                                       f"+-{SNR_PLAUSIBLE_DB} dB", str(dataset.csv_path), spec.row,
                                       dataset.columns.get("snr")))
    if not check_audio:
        return report

    first_row: dict[Path, int] = {}
    for spec in dataset.mixtures:
        for path in dataset.files_of(spec):
            first_row.setdefault(path, spec.row)
    expected = round(expected_seconds * SAMPLE_RATE) if expected_seconds else None
    # Real recordings may legitimately differ in length; synthetic clips must not.
    duration_is_error = dataset.kind is not SetKind.EVAL_REAL
    facts_by_path: dict[Path, AudioFacts] = {}
    for facts in ordered_map(lambda p: inspect_audio(p, expected, duration_is_error), list(first_row),
                             workers=workers, prefetch=64):
        facts_by_path[facts.path] = facts
        for severity, code, message in facts.problems:
            message = f"{message} (first used on row {first_row[facts.path]} of {dataset.csv_path.name})"
            report.issues.append(Issue(severity, code, message, str(facts.path)))
    report.files_checked = len(facts_by_path)

    if dataset.kind is SetKind.VALIDATION:
        for spec in dataset.mixtures:
            source, noise = (facts_by_path[p] for p in dataset.files_of(spec))
            if source.frames is not None and noise.frames is not None and source.frames != noise.frames:
                report.issues.append(Issue(
                    "error", "length-mismatch",
                    f"source has {source.frames} samples, noise {noise.frames}: the official recipe adds "
                    "them sample by sample", str(dataset.csv_path), spec.row))
    return report
