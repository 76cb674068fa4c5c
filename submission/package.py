"""`dcase9 package`: build the submission zip from submission.yaml, then check it.

1. Pre-check, listing every problem: labels, number of systems and indices, the technical
   report, each system's parameter count and development results, its meta YAML against the
   profile, secrets in what will be written, its estimates against the evaluation CSVs
   (every mixture exactly once, right rate, channels and length, no extra WAVs), and entry names
   that would be one file on macOS or Windows (differing only by letter case or NFC/NFD).
2. Write the zip deterministically (entries sorted by name, fixed time stamps and permissions,
   DEFLATE at a fixed level): estimates in the profile's sample format are copied byte for byte,
   others are converted. The zip is written to a temporary file next to the output.
3. Run `check_package` on it; only a package that passes replaces the output path.
A package is never written while any error stands.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from dcase9.submission.check import CheckReport, check_package, colliding_entries
from dcase9.submission.config import SubmissionConfig, SystemEntry, load_submission_config
from dcase9.submission.findings import ERROR, WARNING, Finding, errors_in
from dcase9.submission.meta import (build_meta, count_checkpoint_parameters, meta_yaml_text, parse_meta,
                             read_development_results, sampling_rate_text, validate_meta)
from dcase9.submission.outputs import (FLOAT_SUBTYPES, WRITABLE_SUBTYPES, ExpectedOutput, audio_problems, convert_wav,
                                expected_outputs, has_non_finite, output_names)
from dcase9.submission.profile import RESULTS_SOURCE, Profile, load_profile, result_metrics
from dcase9.submission.secrets import PDF_MAGIC, SecretScanner, line_of_offset
from dcase9.submission.template import compare_with_template, read_template
from dcase9.errors import Dcase9Error
from dcase9.files import atomic_output, check_no_overlap, remove_partial_files
from dcase9.outputs import estimate_files, estimate_path, unvouched_estimates

# Zip determinism: the same inputs give the same bytes, whenever and by whomever they are packed.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
FILE_MODE = 0o100644  # regular file, rw-r--r--
UNIX = 3  # "made by" system: permissions are Unix modes
# DEFLATE level 1: audio barely compresses at any level (PCM ~6 %, float ~35 %), and higher levels
# are up to 10x slower on float samples, which matters for 4 x 3,200 outputs.
COMPRESS_LEVEL = 1


@dataclass
class SystemSummary:
    label: str
    name: str
    abbreviation: str
    total_parameters: int | None = None
    failed_sources: set[str] = field(default_factory=set)  # meta values whose source failed (named once)
    parameters_by_prefix: dict[str, int] = field(default_factory=dict)
    results: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)  # subset -> outputs packaged
    copied: int = 0  # outputs copied byte for byte
    converted: int = 0  # outputs re-encoded to the package's sample format
    clipped_outputs: int = 0  # converted outputs with samples beyond full scale


@dataclass
class PackageResult:
    package: Path
    profile: str
    written: bool
    findings: list[Finding]
    systems: list[SystemSummary]
    check: CheckReport | None = None
    entries: int = 0

    @property
    def errors(self) -> list[Finding]:
        return errors_in(self.findings)

    @property
    def ok(self) -> bool:
        return self.written and not self.errors

    def to_json(self) -> dict[str, Any]:
        return {"package": str(self.package), "profile": self.profile, "written": self.written, "ok": self.ok,
                "entries": self.entries,
                "systems": [{k: v for k, v in s.__dict__.items() if k != "failed_sources"} for s in self.systems],
                "errors": len(self.errors), "findings": [f.to_json() for f in self.findings]}


@dataclass
class _Entry:
    """One zip entry to write: bytes in memory, a file to copy, or a file to convert."""

    name: str
    data: bytes | None = None
    path: Path | None = None
    convert_to: str | None = None
    label: str | None = None


class _Refused(Exception):
    """The written zip did not pass; carries the findings (the temporary file is then removed)."""

    def __init__(self, findings: list[Finding], check: CheckReport | None = None):
        super().__init__(f"{len(findings)} problem(s)")
        self.findings, self.check = findings, check


def build_package(config: SubmissionConfig | str | Path, out: str | Path, *,
                  profile: str | Path | Profile | None = None, environ: Mapping[str, str] | None = None,
                  template: str | Path | Mapping[str, Any] | None = None, progress: bool = False) -> PackageResult:
    """Build and check the submission zip `out`. Nothing is written unless every check passes.

    `config` is submission.yaml (a path) or a loaded SubmissionConfig with absolute paths;
    `profile` overrides the config's; `environ` (default os.environ) supplies secret values;
    `template` is the task's official meta template, compared with every meta file written.
    Raises Dcase9Error for unusable input (missing config or template, unreadable evaluation data).
    """
    config_file = None if isinstance(config, SubmissionConfig) else Path(config)
    if not isinstance(config, SubmissionConfig):
        config = load_submission_config(config)
    profile = load_profile(profile if profile is not None else config.profile)
    if template is not None and not isinstance(template, Mapping):
        template = read_template(template)
    environ = environ if environ is not None else os.environ
    out = Path(out)
    check_no_overlap({"--out": out}, {"the submission config": config_file, **config.input_paths()})
    remove_partial_files(out.parent, out.name)  # what a killed earlier build of this zip left
    builder = _Builder(config, profile, SecretScanner(profile.secrets, environ), template)
    entries, expected = builder.prepare()
    result = PackageResult(out, profile.name, False, builder.findings, builder.systems)
    if errors_in(builder.findings):
        return result
    try:
        with atomic_output(out) as tmp:
            builder.write(tmp, entries, progress)
            if errors_in(builder.findings):  # non-finite samples found while converting
                raise _Refused(builder.findings)
            check = check_package(tmp, profile=profile, expected=expected, environ=environ, template=template)
            check.package = out  # the temporary file becomes `out` on leaving this block
            if not check.ok:
                raise _Refused(_merged(builder.findings, check.findings), check)
    except _Refused as refused:
        result.findings, result.check = refused.findings, refused.check
        return result
    result.findings = _merged(builder.findings, check.findings)
    result.check, result.written, result.entries = check, True, len(entries)
    return result


def _merged(first: list[Finding], second: list[Finding]) -> list[Finding]:
    """Both lists, each finding once (the pre-check and the check both compare the meta template)."""
    return list(dict.fromkeys(first + second))


class _Builder:
    def __init__(self, config: SubmissionConfig, profile: Profile, scanner: SecretScanner,
                 template: Mapping[str, Any] | None = None):
        self.config = config
        self.profile = profile
        self.scanner = scanner
        self.template = template
        self.subtype = config.output_subtype or profile.audio.package_subtype
        self.findings: list[Finding] = []
        self.systems: list[SystemSummary] = []
        self.prefix = profile.label.prefix_template.format(lastname=config.submitter.lastname,
                                                           institution=config.submitter.abbreviation)

    def add(self, code: str, message: str, entry: str | Path | None = None, line: int | None = None,
            severity: str = ERROR) -> None:
        self.findings.append(Finding(code, message, str(entry) if entry is not None else None, line, severity))

    # ---- pre-check

    def prepare(self) -> tuple[list[_Entry], dict[str, list[ExpectedOutput]]]:
        if self.subtype not in self.profile.audio.accepted_subtypes or self.subtype not in WRITABLE_SUBTYPES:
            self.add("config", f"output_subtype {self.subtype} is not one the profile accepts and dcase9 writes "
                     f"({', '.join(s for s in self.profile.audio.accepted_subtypes if s in WRITABLE_SUBTYPES)})")
        expected = self.evaluation_data()
        self.check_system_set()
        entries = self.report_entries()
        for system in self.config.systems:
            entries += self.system_entries(system, expected)
        self.findings += colliding_entries([entry.name for entry in entries])
        return entries, expected

    def evaluation_data(self) -> dict[str, list[ExpectedOutput]]:
        known = {k: v for k, v in self.config.data.items() if k in self.profile.subsets}
        for name in sorted(set(self.config.data) - set(known)):
            self.add("config", f"data: unknown subset {name!r}; the profile's subsets are "
                     + ", ".join(self.profile.subsets))
        for name in self.profile.subsets:
            if name not in known:
                self.add("config", f"data: no folder for {name}; every mixture of it needs an output, so the "
                         "evaluation set must be at hand")
        return expected_outputs(self.profile, known)

    def check_system_set(self) -> None:
        systems = self.config.systems
        if len(systems) > self.profile.max_systems:
            self.add("too-many-systems", f"{len(systems)} systems; at most {self.profile.max_systems} are allowed")
        seen: dict[int, str] = {}
        for system in systems:
            if system.index in seen:
                self.add("duplicate-index", f"systems {seen[system.index]!r} and {system.name!r} share index "
                         f"{system.index}")
            seen.setdefault(system.index, system.name)

    def report_entries(self) -> list[_Entry]:
        path = self.config.technical_report
        name = self.profile.templates.report.format(prefix=self.prefix)
        if not path.is_file():
            self.add("missing-report", "technical report not found", path)
            return []
        data = path.read_bytes()
        if not data.startswith(PDF_MAGIC):
            self.add("bad-report", f"not a PDF (it does not start with {PDF_MAGIC.decode()})", path)
        self.scan(data, path, text=False)
        return [_Entry(name, path=path)]

    def scan(self, data: bytes, where: str | Path, *, text: bool) -> None:
        scan = self.scanner.scan_entry(data)
        for hit in scan.hits:
            line = line_of_offset(data, hit.offset) if text and not hit.where else None
            place = hit.where or ("" if text else f"at byte {hit.offset}")
            self.add("secret", f"contains {hit.what}" + (f" {place}" if place else "")
                     + "; remove it and rotate the key", where, line)
        for limit in scan.limits:
            self.add("scan-limit", f"{limit} for secrets", where, severity=WARNING)

    def system_entries(self, system: SystemEntry, expected: dict[str, list[ExpectedOutput]]) -> list[_Entry]:
        profile = self.profile
        label = profile.label_of(self.config.submitter.lastname, self.config.submitter.abbreviation, system.index)
        problem = profile.label_problem(label)
        if problem is not None:
            self.add("bad-label", f"system {system.name!r}: label {label!r} (from submitter.lastname, "
                     f"submitter.abbreviation and index) {problem}")
        summary = SystemSummary(label, system.name, system.abbreviation)
        self.systems.append(summary)
        meta_name = profile.templates.meta.format(label=label, prefix=self.prefix)
        values = self.meta_values(system, label, summary)
        text = meta_yaml_text(build_meta(profile.meta, values), label, profile)
        document, problems = parse_meta(text, meta_name)
        self.findings += problems
        self.findings += validate_meta(document, profile.meta, entry=meta_name, text=text,
                                       context={"label": label, "prefix": self.prefix},
                                       failed_sources=summary.failed_sources)
        if self.template is not None and not problems:
            self.findings += compare_with_template(document, self.template, entry=meta_name, text=text)
        self.scan(text.encode("utf-8"), meta_name, text=True)
        entries = [_Entry(meta_name, data=text.encode("utf-8"), label=label)]
        for name in sorted(set(system.estimates) - set(profile.subsets)):
            self.add("config", f"system {label}: estimates for an unknown subset {name!r}; the profile's subsets "
                     "are " + ", ".join(profile.subsets))
        for subset in profile.subsets:
            folder = system.estimates.get(subset)
            if folder is None:
                self.add("config", f"system {label}: no estimates folder for {subset}")
                continue
            if subset in expected:
                entries += self.output_entries(label, subset, folder, expected[subset], summary)
        return entries

    def meta_values(self, system: SystemEntry, label: str, summary: SystemSummary) -> dict[str, Any]:
        profile = self.profile
        if system.parameters.total is not None:
            summary.total_parameters = system.parameters.total
        else:
            try:
                count = count_checkpoint_parameters(system.parameters.checkpoints, profile.parameter_count.exclude,
                                                    trust=system.parameters.trust_checkpoint)
                summary.total_parameters = count.total
                summary.parameters_by_prefix = count.by_prefix
            except Dcase9Error as exc:
                self.add("parameters", f"system {label}: {exc}")
                summary.failed_sources.add("system.total_parameters")
        if system.development_report is not None:
            results, problems = read_development_results(system.development_report, profile.development_set.value)
            self.findings += problems
            if problems:
                summary.failed_sources.update(f"{RESULTS_SOURCE}{metric}" for metric in result_metrics())
        else:
            results = dict(system.development_results or {})
        summary.results = results
        description = dict(system.description)
        rate = description.get("input_sampling_rate")
        if isinstance(rate, (int, float)) and not isinstance(rate, bool):  # 32000 -> '32kHz', as DCASE writes it
            description["input_sampling_rate"] = sampling_rate_text(rate)
        values: dict[str, Any] = {
            "label": label,
            "authors": self.author_values(system, label),
            "system.name": system.name,
            "system.abbreviation": system.abbreviation,
            "system.description": description,
            "system.total_parameters": summary.total_parameters,
            "system.external_data": list(system.external_data),
            "system.pretrained_models": list(system.pretrained_models),
            "system.source_code": system.source_code,
            "audio.sample_rate": sampling_rate_text(profile.audio.sample_rate),
        }
        values.update({f"{RESULTS_SOURCE}{metric}": value for metric, value in results.items()
                       if metric in result_metrics()})
        return values

    def author_values(self, system: SystemEntry, label: str) -> list[dict[str, Any]]:
        """The authors as the DCASE template lists them: `corresponding` true on exactly one, false on
        the others; each affiliation with its abbreviation (default: the submitter's)."""
        authors = [a.model_dump() for a in (system.authors if system.authors is not None else self.config.authors)]
        submitter = self.config.submitter
        if not any(a["corresponding"] for a in authors):
            # The label's last name is the corresponding author's: mark that author, if only one has it.
            named = [a for a in authors if a["lastname"] == submitter.lastname]
            if len(named) == 1:
                named[0]["corresponding"] = True
                self.add("config", f"system {label}: no author is marked corresponding: true; {named[0]['firstname']} "
                         f"{named[0]['lastname']} (the label's last name) is marked", severity=WARNING)
        for author in authors:
            affiliation = author["affiliation"]
            if affiliation["abbreviation"] is None:
                affiliation["abbreviation"] = submitter.abbreviation
                self.add("config", f"system {label}: author {author['firstname']} {author['lastname']} has no "
                         f"affiliation.abbreviation; the submitter's {submitter.abbreviation!r} is written",
                         severity=WARNING)
            if affiliation["location"] is None:
                self.add("config", f"system {label}: author {author['firstname']} {author['lastname']} has no "
                         "affiliation.location (the DCASE template asks for it); it is written as null",
                         severity=WARNING)
        return authors

    def output_entries(self, label: str, subset: str, folder: Path, outputs: list[ExpectedOutput],
                       summary: SystemSummary) -> list[_Entry]:
        if not folder.is_dir():
            self.add("missing-estimates", f"system {label}: the {subset} estimates folder does not exist", folder)
            return []
        present = estimate_files(folder)  # as `dcase9 infer` writes them
        # A dcase9 folder that mixes runs (or holds edited files) would submit outputs of another system.
        for output_id, reason in sorted((unvouched_estimates(folder, present) or {}).items()):
            self.add("unvouched-output", f"system {label}: {reason}", present.pop(output_id))
        ids = {o.id for o in outputs}
        missing = [o for o in outputs if o.id not in present]
        if missing and len(missing) == len(outputs):
            self.add("missing-output", f"system {label}: none of the {len(outputs)} {subset} mixtures has an "
                     f"estimate here (expected <id>.wav, e.g. {outputs[0].id}.wav)", folder)
        else:
            for output in missing:
                self.add("missing-output", f"system {label}: no estimate for mixture {output.file} of {subset}",
                         estimate_path(folder, output.id))
        for stem in sorted(set(present) - ids):
            self.add("extra-file", f"system {label}: matches no mixture of the {subset} set; remove it (it would "
                     "not be packaged)", present[stem])
        names = output_names(self.profile, subset, label, self.prefix, outputs)
        entries = []
        for name, output in names.items():
            path = present.get(output.id)
            if path is None:
                continue
            try:
                info = sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                self.add("unreadable-output", f"not readable audio ({exc})", path)
                continue
            problems = audio_problems(info, self.profile.audio, output.frames, check_encoding=False)
            for code, message in problems:
                self.add(code, message, path)
            if problems:
                continue
            same_encoding = info.format == self.profile.audio.format and info.subtype == self.subtype
            entries.append(_Entry(name, path=path, convert_to=None if same_encoding else self.subtype, label=label))
        summary.outputs[subset] = len(entries)
        return entries

    # ---- writing

    def write(self, target: Path, entries: list[_Entry], progress: bool) -> None:
        by_label = {s.label: s for s in self.systems}
        clipped: dict[str, list[float]] = {}
        bar = _progress() if progress else None
        with bar if bar is not None else nullcontext():
            task = bar.add_task("packaging", total=len(entries)) if bar is not None else None
            with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                for entry in sorted(entries, key=lambda e: e.name):
                    data = self.content_of(entry, by_label, clipped)
                    if data is not None:
                        archive.writestr(_zip_info(entry.name), data, compresslevel=COMPRESS_LEVEL)
                    if bar is not None and task is not None:
                        bar.update(task, advance=1)
        for label, peaks in clipped.items():
            by_label[label].clipped_outputs = len(peaks)
            self.add("clipped", f"system {label}: {len(peaks)} output(s) exceeded full scale (largest peak "
                     f"{max(peaks):.3f}) and were clipped in the conversion to {self.subtype}; scale them below "
                     "1.0 or package a float format to keep them exact", severity=WARNING)

    def content_of(self, entry: _Entry, by_label: dict[str, SystemSummary],
                   clipped: dict[str, list[float]]) -> bytes | None:
        if entry.data is not None:
            return entry.data
        assert entry.path is not None
        summary = by_label.get(entry.label or "")
        if entry.convert_to is None:
            data = entry.path.read_bytes()
            if summary is not None:
                summary.copied += 1
                if sf.info(str(entry.path)).subtype in FLOAT_SUBTYPES and has_non_finite(entry.path):
                    self.add("non-finite-output", "holds NaN or infinite samples", entry.path)
            return data
        converted = convert_wav(entry.path, entry.convert_to)
        if converted.non_finite:
            self.add("non-finite-output", "holds NaN or infinite samples", entry.path)
            return None
        if summary is not None:
            summary.converted += 1
            if converted.clipped:
                clipped.setdefault(summary.label, []).append(converted.peak)
        return converted.data


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = UNIX
    info.external_attr = FILE_MODE << 16
    return info


def _progress() -> Any:
    from dcase9.progress import progress_bar

    return progress_bar("files")
