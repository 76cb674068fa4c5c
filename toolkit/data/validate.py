"""`dcase9 validate`: check an evaluation-set folder and report every problem by file, row and field.

AudioSep's benchmarks are checked with the same codes. What differs follows from how AudioSep's
evaluators read them (`dcase9.data.benchmarks`): their audio is expected at 32 kHz, and a file at
another rate, with several channels or silent is a warning, not an error (librosa.load resamples and
averages it, and the evaluator scores it: so do we); their clips have no fixed duration, but a
mixture and its reference must have the same number of samples (the evaluator subtracts them); and
AudioSet's class folders must still give the clips its evaluator selects (the first 10 per class).
"""

from __future__ import annotations

import collections
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dcase9.audio import SAMPLE_RATE, non_finite_count, wav_truncation
from dcase9.data.benchmarks import AUDIOSET_CLIPS_PER_CLASS
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
    sample_rate: int | None = None
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


def inspect_audio(path: Path, expected_frames: int | None, duration_is_error: bool, *,
                  sample_rate: int = SAMPLE_RATE, read_as_librosa: bool = False) -> AudioFacts:
    """What is wrong with one audio file. `read_as_librosa`: the set's evaluator loads files with
    librosa.load(sr=sample_rate, mono=True) and scores what it gets (AudioSep's benchmarks), so another rate,
    several channels or silence are warnings that say what happens, not errors."""
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
    facts.frames, facts.sample_rate = info.frames, info.samplerate
    truncated = wav_truncation(path)
    if truncated is not None:
        facts.problems.append(("error", "audio-truncated", truncated))
    lenient = "warning" if read_as_librosa else "error"
    if info.samplerate != sample_rate:
        facts.problems.append((lenient, "audio-rate", f"sample rate {info.samplerate} Hz, expected {sample_rate}" + (
            " (resampled when read, with soxr HQ as librosa 0.10 does: scores may differ from AudioSep's in the last "
            "decimals)" if read_as_librosa else "")))
    if info.channels != 1:
        facts.problems.append((lenient, "audio-channels", f"{info.channels} channels, expected mono" + (
            " (averaged when read, as librosa.load(mono=True) does)" if read_as_librosa else "")))
    if (expected_frames is not None and info.samplerate == sample_rate and info.frames != expected_frames
            and truncated is None):  # a truncated file is short for that reason alone
        seconds = info.frames / info.samplerate
        far_off = abs(info.frames - expected_frames) > DURATION_TOLERANCE * expected_frames
        severity = "error" if far_off and duration_is_error else "warning"
        facts.problems.append((severity, "audio-duration",
                               f"{seconds:.3f} s ({info.frames} samples), expected "
                               f"{expected_frames / sample_rate:g} s ({expected_frames} samples)"))
    if data.size == 0:
        facts.problems.append(("error", "audio-empty", "no samples"))
    elif info.frames < MIN_AUDIO_SECONDS * info.samplerate:
        facts.problems.append(("error", "audio-too-short", f"{info.frames} samples: shorter than "
                               f"{MIN_AUDIO_SECONDS:g} s, too short to separate"))
    elif not np.all(np.isfinite(data)):
        facts.problems.append(("error", "audio-nonfinite", f"{non_finite_count(data)} NaN or infinite samples"))
    elif not np.any(data):
        facts.problems.append((lenient, "audio-silent", "all samples are zero" + (
            " (AudioSep's evaluator scores it all the same)" if read_as_librosa else "")))
    return facts


def validate_dataset(data: str | Path, kind: SetKind | str | None = None, csv_path: str | Path | None = None,
                     *, check_audio: bool = True, expected_seconds: float | None = EXPECTED_SECONDS,
                     workers: int = 2, query_column: str | None = None) -> ValidationReport:
    """Check metadata and (unless `check_audio=False`) every referenced audio file. `expected_seconds` is
    the Task 9 sets' clip length; AudioSep's benchmarks have none (`query`: see `parse_dataset`)."""
    dataset, issues = parse_dataset(data, kind, csv_path, query_column=query_column)
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
    benchmark = dataset.kind.is_benchmark
    rate = dataset.sample_rate
    expected = round(expected_seconds * rate) if expected_seconds and not benchmark else None
    # Real recordings may legitimately differ in length; synthetic clips must not.
    duration_is_error = dataset.kind is not SetKind.EVAL_REAL
    facts_by_path: dict[Path, AudioFacts] = {}
    for facts in ordered_map(lambda p: inspect_audio(p, expected, duration_is_error, sample_rate=rate,
                                                     read_as_librosa=benchmark), list(first_row),
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
    if benchmark:
        for spec in dataset.mixtures:
            mixture, reference = (facts_by_path[p] for p in dataset.files_of(spec))
            if mixture.frames is not None and reference.frames is not None and mixture.frames != reference.frames \
                    and mixture.sample_rate == reference.sample_rate:
                report.issues.append(Issue(
                    "error", "length-mismatch",
                    f"mixture {spec.file} has {mixture.frames} samples, reference {spec.reference} {reference.frames}: "
                    "AudioSep's evaluator subtracts them sample by sample", str(dataset.csv_path), spec.row))
        if dataset.kind is SetKind.AUDIOSET:
            report.issues += audioset_selection(dataset)
    return report


_AUDIOSET_NAME = re.compile(r"(.*),(mixture|source).wav")  # AudioSetEvaluator._get_audio_names' pattern


def audioset_selection(dataset: DataSet) -> list[Issue]:
    """Where AudioSep's AudioSet evaluator would score other clips than the CSV's rows: it ignores the CSV,
    lists each class folder, keeps the names containing '.wav', and takes the first 10 clip names in sorted
    order. One error per class whose selection differs (scores would differ from AudioSep's)."""
    issues = []
    by_class: dict[str, list[str]] = {}
    first_row: dict[str, int] = {}
    for spec in dataset.mixtures:
        by_class.setdefault(spec.group or "", []).append(spec.id)
        first_row.setdefault(spec.group or "", spec.row)
    for class_id, listed in by_class.items():
        folder = dataset.audio_dir / f"class_id={class_id}"
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            continue  # its files are reported missing, row by row
        names = []
        for entry in entries:
            if ".wav" not in entry:
                continue
            found = _AUDIOSET_NAME.search(entry)
            if found is None:
                issues.append(Issue("error", "benchmark-selection", f"{entry!r} is a .wav file without the name pattern "
                                    "'<name>,mixture.wav' / '<name>,source.wav': AudioSep's evaluator stops at it",
                                    str(folder)))
                break
            names.append(found.group(1))
        else:
            selected = sorted(set(names))[:AUDIOSET_CLIPS_PER_CLASS]
            if selected != sorted(set(listed)):
                extra = [n for n in selected if n not in listed]
                left = [n for n in listed if n not in selected]
                said = "; ".join(part for part in (
                    f"it takes {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}, which the CSV does not list"
                    if extra else "",
                    f"not {', '.join(left[:3])}{' ...' if len(left) > 3 else ''}" if left else "") if part)
                issues.append(Issue("error", "benchmark-selection", f"AudioSep's evaluator scores the first "
                                    f"{AUDIOSET_CLIPS_PER_CLASS} clips of this folder in sorted order, not the CSV's "
                                    f"rows for class {class_id} (first on row {first_row[class_id]}): {said}; scores "
                                    "would differ from AudioSep's", str(folder)))
    return issues
