"""`dcase9 package --check`: everything that can be wrong with a submission zip, listed at once.

Checks, against the profile: every entry reads back, as a stream, with its declared size and a
correct CRC (what `ZipFile.testzip` does, but listing every damaged entry, and stopping an entry
that inflates past its declared size at once, so a zip bomb costs no memory); entry names are
relative, without '..', backslashes or drive letters, under the task folder, and no entry is a
symbolic link, a duplicate, or a name that differs from another only by letter case or Unicode
normalisation (one file once unpacked on macOS or Windows); labels follow the DCASE structure,
agree on the team, number at most `max_systems`, and each meta file's folder, file prefix and
`submission.label` are the same label; each system's meta YAML parses (the bounded safe loader,
line numbers on syntax errors, no key twice in a mapping), satisfies the meta rules and, with
`template`, has every key path of the official template; every mixture of the evaluation sets has
exactly one output of the right format, rate, channels and length (with the data folders; without
them the outputs are counted against the official numbers); the technical report is a PDF;
nothing else is in the zip; and no entry, entry comment, extra field or zip comment contains a
secret.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import soundfile as sf

from dcase9.submission.findings import ERROR, WARNING, Finding, errors_in
from dcase9.submission.meta import parse_meta, validate_meta
from dcase9.submission.outputs import (FLOAT_SUBTYPES, ExpectedOutput, audio_problems, expected_outputs,
                                has_non_finite, output_names)
from dcase9.submission.profile import Profile, load_profile
from dcase9.submission.secrets import PDF_MAGIC, SecretHit, SecretScanner, line_of_offset
from dcase9.submission.template import compare_with_template, read_template
from dcase9.errors import DataError
from dcase9.files import colliding_names, describe_non_file, name_collision

_DRIVE = re.compile(r"^[A-Za-z]:")
_READ_CHUNK = 2**20  # compressed bytes read at a time
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip entry's local file header (30 bytes)
_METHODS = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA"}


@dataclass
class CheckReport:
    package: Path
    profile: str
    findings: list[Finding]
    labels: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, int]] = field(default_factory=dict)  # label -> subset -> outputs found
    entries: int = 0
    data_checked: bool = False  # outputs matched against the evaluation CSVs (not just counted)

    @property
    def errors(self) -> list[Finding]:
        return errors_in(self.findings)

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> set[str]:
        return {f.code for f in self.errors}

    def to_json(self) -> dict[str, Any]:
        return {"package": str(self.package), "profile": self.profile, "ok": self.ok, "entries": self.entries,
                "systems": self.labels, "outputs": self.outputs, "data_checked": self.data_checked,
                "errors": len(self.errors), "warnings": len(self.warnings),
                "findings": [f.to_json() for f in self.findings]}


def check_package(package: str | Path, *, profile: str | Path | Profile | None = None,
                  data: Mapping[str, Path] | None = None, environ: Mapping[str, str] | None = None,
                  expected: Mapping[str, list[ExpectedOutput]] | None = None,
                  template: str | Path | Mapping[str, Any] | None = None) -> CheckReport:
    """Check a submission zip. `data` maps subset names (see the profile) to evaluation-set folders;
    `environ` (default: os.environ) supplies the values searched for as secrets; `template` is the
    task's official meta template (a path, or the parsed mapping), compared with each meta file.

    Raises DataError when the file is missing or not a zip archive, ConfigError for an unusable
    template; every problem inside the zip is a Finding in the report.
    """
    profile = load_profile(profile)
    if template is not None and not isinstance(template, Mapping):
        template = read_template(template)
    package = Path(package)
    problem = describe_non_file(package)
    if problem is not None:
        raise DataError("no such package file" if not package.exists() else f"package {problem}", file=package)
    if expected is None:
        expected = expected_outputs(profile, data or {})
    try:
        archive = zipfile.ZipFile(package)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"not a readable zip archive ({exc})", file=package) from exc
    with archive, open(package, "rb") as raw:
        checker = _Checker(archive, raw, profile, expected, environ if environ is not None else os.environ,
                           template)
        findings = checker.run()
    return CheckReport(package=package, profile=profile.name, findings=findings, labels=checker.labels,
                       outputs=checker.output_counts, entries=len(checker.infos),
                       data_checked=bool(expected))


def unsafe_name_reason(name: str) -> str | None:
    """Why a zip entry name could write outside the folder it is unpacked into, or None."""
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    if any(ord(ch) < 32 for ch in name):
        return "contains a control character"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "contains '..'"
    if any(part in ("", ".") for part in parts):
        return "has an empty or '.' path component"
    return None


def colliding_entries(names: list[str]) -> list[Finding]:
    """A `name-collision` finding for each entry name that differs from an earlier one only by letter
    case or Unicode normalisation (NFC/NFD): unpacked on macOS or Windows, one of the two is lost."""
    return [Finding("name-collision", f"differs from the entry {first!r} only by {name_collision(first, later)}: "
                    "unpacked on macOS or Windows the two are one file and one is lost; rename one", later)
            for first, later in colliding_names(names, lambda name: name.rstrip("/"))]


class EntryProblem(Exception):
    """Why an entry cannot be read back as the directory declares it."""


def read_member(raw: BinaryIO, info: zipfile.ZipInfo) -> bytes:
    """An entry's bytes, read as a stream from the package file `raw`.

    The output is counted as it is inflated, against the size the central directory declares: an
    entry that inflates past it (a zip bomb) is stopped there, so memory never exceeds the declared
    size (which the caller bounds) plus one read. Then its size, end of stream and CRC are checked.
    Raises EntryProblem saying what is wrong.
    """
    if info.flag_bits & 0x1:
        raise EntryProblem("is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        method = _METHODS.get(info.compress_type, f"method {info.compress_type}")
        raise EntryProblem(f"is compressed with {method}; a package uses stored or deflate entries")
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise EntryProblem("has no local header where the zip directory places it")
    fields = _LOCAL_HEADER.unpack(header)
    name_length, extra_length = fields[-2], fields[-1]
    local_name = raw.read(name_length)
    encoding = "utf-8" if fields[3] & 0x800 else "cp437"
    if local_name.decode(encoding, "replace") != info.orig_filename:
        raise EntryProblem(f"its local header names {local_name.decode(encoding, 'replace')!r}: the zip "
                           "directory and the entry disagree")
    raw.seek(extra_length, os.SEEK_CUR)
    inflate = zlib.decompressobj(-zlib.MAX_WBITS) if info.compress_type == zipfile.ZIP_DEFLATED else None
    declared = info.file_size
    out = bytearray()
    left = info.compress_size
    while left > 0:
        chunk = raw.read(min(_READ_CHUNK, left))
        if not chunk:
            raise EntryProblem("is cut short: the zip ends inside its data")
        left -= len(chunk)
        if inflate is None:
            out += chunk
        else:
            pending = chunk
            while pending:
                try:
                    out += inflate.decompress(pending, declared - len(out) + 1)
                except zlib.error as exc:
                    raise EntryProblem(f"does not decompress ({exc})") from None
                pending = inflate.unconsumed_tail
                if len(out) > declared:
                    break
            if inflate.eof:
                break
        if len(out) > declared:
            raise EntryProblem(f"inflates past its declared size of {declared:,} bytes (a zip bomb?); "
                               "reading stopped there")
    if inflate is not None and not inflate.eof:
        raise EntryProblem("its compressed data ends before the end of the deflate stream")
    if len(out) != declared:
        raise EntryProblem(f"holds {len(out):,} bytes; its header declares {declared:,}")
    crc = zlib.crc32(out)
    if crc != info.CRC:
        raise EntryProblem(f"fails its CRC check (computed {crc:08x}, the zip declares {info.CRC:08x})")
    return bytes(out)


@dataclass
class _Output:
    label: str
    subset: str


class _Checker:
    def __init__(self, archive: zipfile.ZipFile, raw: BinaryIO, profile: Profile,
                 expected: Mapping[str, list[ExpectedOutput]], environ: Mapping[str, str],
                 template: Mapping[str, Any] | None = None):
        self.archive = archive
        self.raw = raw
        self.template = template
        self.profile = profile
        self.templates = profile.templates
        self.expected = expected
        self.scanner = SecretScanner(profile.secrets, environ)
        self.infos = archive.infolist()
        self.findings: list[Finding] = []
        self.labels: list[str] = []
        self.output_counts: dict[str, dict[str, int]] = {}

    def add(self, code: str, message: str, entry: str | None = None, line: int | None = None,
            severity: str = ERROR) -> None:
        self.findings.append(Finding(code, message, entry, line, severity))

    def secrets(self, hits: list[SecretHit], entry: str | None, part: str) -> None:
        for hit in hits:
            self.add("secret", f"{part} contains {hit.what}; remove it and rotate the key", entry)

    def run(self) -> list[Finding]:
        self.secrets(self.scanner.scan(self.archive.comment), "(zip comment)", "the zip comment")
        for info in self.infos:
            self.secrets(self.scanner.scan(info.comment), info.filename, "its entry comment")
            self.secrets(self.scanner.scan(info.extra), info.filename, "its extra field")
        files = self.usable_file_entries()
        metas, reports, outputs, others = self.classify(files)
        self.labels = sorted({*metas, *(o.label for o in outputs.values())})
        prefixes = self.check_labels(metas)
        self.check_reports(reports, prefixes)
        folder = self.profile.layout.task_folder
        for name in sorted(others):
            disagreement = self.templates.meta.disagreement(name)
            if folder is not None and not name.startswith(folder + "/"):
                self.add("outside-task-folder", f"not under the task folder {folder}/: the official validator "
                         f"reads only entries under it ({self.layout_summary()})", name)
            elif disagreement is not None:
                self.add("label-mismatch", "a meta file whose folder and file name give different labels ("
                         + "; ".join(" vs ".join(values) for values in disagreement.values())
                         + "): the folder name, the file prefix and submission.label must be the same label",
                         name)
            else:
                self.add("extra-file", "not part of the layout the profile describes "
                         f"({self.layout_summary()})", name)
        for label in self.labels:
            if label not in metas:
                self.add("missing-meta", f"system {label} has no meta file "
                         f"{self.templates.meta.format(label=label, prefix=self.prefix_for(label))}")
        mixture_of = self.check_output_sets(outputs)
        for info in files:
            self.read_entry(info, metas, reports, outputs, mixture_of)
        return sorted(self.findings, key=lambda f: (f.entry is not None, f.entry or "", f.line or 0, f.code))

    # ---- structure

    def usable_file_entries(self) -> list[zipfile.ZipInfo]:
        seen: set[str] = set()
        files = []
        for info in self.infos:
            name = info.filename
            if name in seen:
                self.add("duplicate-entry", "appears more than once in the zip", name)
                continue
            seen.add(name)
            reason = unsafe_name_reason(name)
            if reason:
                self.add("unsafe-path", f"unsafe entry name: it {reason}", name)
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                self.add("symlink", "is a symbolic link; the package must hold plain files", name)
                continue
            if info.is_dir():
                continue
            files.append(info)
        self.findings += colliding_entries([info.filename for info in self.infos])
        return files

    def classify(self, files: list[zipfile.ZipInfo]) -> tuple[dict[str, str], set[str], dict[str, _Output], set[str]]:
        metas: dict[str, str] = {}  # label -> entry name
        reports: set[str] = set()
        outputs: dict[str, _Output] = {}
        others: set[str] = set()
        for info in files:
            name = info.filename
            meta = self.templates.meta.match(name)
            if meta is not None:
                metas[meta["label"]] = name
                continue
            if self.templates.report.match(name) is not None:
                reports.add(name)
                continue
            for subset, template in self.templates.outputs.items():
                found = template.match(name)
                if found is not None:
                    outputs[name] = _Output(found["label"], subset)
                    break
            else:
                others.add(name)
        return metas, reports, outputs, others

    def prefix_for(self, label: str) -> str:
        return self.profile.prefix_of(label) or label

    def layout_summary(self) -> str:
        parts = [self.templates.meta.text, self.templates.report.text,
                 *(t.text for t in self.templates.outputs.values())]
        return "; ".join(parts)

    def check_labels(self, metas: dict[str, str]) -> set[str]:
        if not self.labels:
            self.add("no-systems", f"no system found (expected entries like {self.templates.meta.text})")
        if len(self.labels) > self.profile.max_systems:
            self.add("too-many-systems", f"{len(self.labels)} systems ({', '.join(self.labels)}); at most "
                     f"{self.profile.max_systems} are allowed")
        prefixes: dict[str, list[str]] = {}
        indices: dict[str, list[str]] = {}
        for label in self.labels:
            parts = self.profile.parse_label(label)
            if parts is None:
                self.add("bad-label", f"label {label!r} {self.profile.label_problem(label)}", metas.get(label))
                continue
            prefixes.setdefault(self.prefix_for(label), []).append(label)
            indices.setdefault(parts["index"], []).append(label)
        if len(prefixes) > 1:
            self.add("label-prefix", "the labels name different teams: "
                     + "; ".join(f"{p}: {', '.join(ls)}" for p, ls in sorted(prefixes.items())))
        for index, labels in sorted(indices.items()):
            if len(labels) > 1:
                self.add("duplicate-index", f"systems {', '.join(labels)} share index {index}")
        return set(prefixes)

    def check_reports(self, reports: set[str], prefixes: set[str]) -> None:
        wanted = {self.templates.report.format(prefix=p) for p in prefixes}
        if not wanted:  # no valid label to name it by: any report-shaped entry will do
            if not reports:
                self.add("missing-report", f"no technical report ({self.templates.report.text})")
            return
        for name in sorted(wanted - reports):
            self.add("missing-report", "the technical report PDF is missing", name)
        for name in sorted(reports - wanted):
            self.add("extra-file", f"a technical report for another team (expected {', '.join(sorted(wanted))})",
                     name)

    def check_output_sets(self, outputs: dict[str, _Output]) -> dict[str, ExpectedOutput]:
        """Missing and extra outputs per system and subset; returns entry name -> its mixture."""
        mixture_of: dict[str, ExpectedOutput] = {}
        found: dict[tuple[str, str], set[str]] = {}
        for name, output in outputs.items():
            found.setdefault((output.label, output.subset), set()).add(name)
        unchecked = [s for s in self.profile.subsets if s not in self.expected]
        if unchecked:
            self.add("no-data", f"no evaluation data for {', '.join(unchecked)}: outputs are counted against the "
                     "official numbers, their names and lengths are not checked (give the data folders)",
                     severity=WARNING)
        for label in self.labels:
            counts = self.output_counts.setdefault(label, {})
            prefix = self.prefix_for(label)
            for subset, rules in self.profile.subsets.items():
                present = found.get((label, subset), set())
                counts[subset] = len(present)
                if subset not in self.expected:
                    if len(present) != rules.official_count:
                        self.add("output-count", f"{label}: {len(present)} {subset} outputs, the official set "
                                 f"has {rules.official_count}")
                    continue
                wanted = output_names(self.profile, subset, label, prefix, self.expected[subset])
                mixture_of.update({n: m for n, m in wanted.items() if n in present})
                missing = sorted(set(wanted) - present)
                if missing and not present:
                    self.add("missing-output", f"{label} has no {subset} outputs at all ({len(wanted)} expected, "
                             f"e.g. {missing[0]})")
                else:
                    for name in missing:
                        self.add("missing-output", f"no output for mixture {wanted[name].file} of {subset}", name)
                for name in sorted(present - set(wanted)):
                    self.add("extra-file", f"matches no mixture of the {subset} set", name)
        return mixture_of

    # ---- contents

    def read_entry(self, info: zipfile.ZipInfo, metas: dict[str, str], reports: set[str],
                   outputs: dict[str, _Output], mixture_of: dict[str, ExpectedOutput]) -> None:
        name = info.filename
        if info.file_size > self.profile.max_entry_bytes:
            self.add("oversized-entry", f"{info.file_size} bytes, more than the limit of "
                     f"{self.profile.max_entry_bytes}; not read", name)
            return
        try:
            data = read_member(self.raw, info)
        except EntryProblem as exc:
            self.add("corrupt-entry", str(exc), name)
            return
        except OSError as exc:
            self.add("corrupt-entry", f"cannot be read back ({exc})", name)
            return
        is_meta = name in metas.values()
        scan = self.scanner.scan_entry(data)
        for hit in scan.hits:
            line = line_of_offset(data, hit.offset) if is_meta and not hit.where else None
            where = hit.where or ("" if line is not None else f"at byte {hit.offset}")
            self.add("secret", f"contains {hit.what}{' ' + where if where else ''}; remove it and rotate the key",
                     name, line)
        for limit in scan.limits:
            self.add("scan-limit", f"{limit} for secrets", name, severity=WARNING)
        if is_meta:
            self.check_meta(name, data)
        elif name in reports:
            if not data.startswith(PDF_MAGIC):
                self.add("bad-report", f"not a PDF (it does not start with {PDF_MAGIC.decode()})", name)
        elif name in outputs:
            expected = mixture_of.get(name)
            if self.expected and outputs[name].subset in self.expected and expected is None:
                return  # already reported as matching no mixture
            self.check_audio(name, data, expected.frames if expected else None)

    def check_meta(self, name: str, data: bytes) -> None:
        label = self.templates.meta.match(name)["label"]  # type: ignore[index]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.add("yaml-syntax", f"not UTF-8 text (byte {exc.start})", name, line_of_offset(data, exc.start))
            return
        document, problems = parse_meta(text, name)
        self.findings += problems
        if not problems:
            self.findings += validate_meta(document, self.profile.meta, entry=name, text=text,
                                           context={"label": label, "prefix": self.prefix_for(label)})
            if self.template is not None:
                self.findings += compare_with_template(document, self.template, entry=name, text=text)

    def check_audio(self, name: str, data: bytes, frames: int | None) -> None:
        if not data:
            self.add("unreadable-output", "empty file (0 bytes), not audio: write this output again and rebuild "
                     "the package", name)
            return
        try:
            info = sf.info(io.BytesIO(data))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            # soundfile's own text names the in-memory buffer (`<_io.BytesIO object at 0x...>`); the
            # finding names the entry, so only libsndfile's reason is kept.
            reason = getattr(exc, "error_string", None) or str(exc)
            self.add("unreadable-output", f"not readable audio ({reason}): write this output again and rebuild "
                     "the package", name)
            return
        for code, message in audio_problems(info, self.profile.audio, frames, check_encoding=True):
            self.add(code, message, name)
        if info.subtype in FLOAT_SUBTYPES and has_non_finite(io.BytesIO(data)):
            self.add("non-finite-output", "holds NaN or infinite samples", name)
