"""Readers for the three Task 9 evaluation-set layouts and AudioSep's six LASS benchmarks (metadata only;
no audio is read here, except the listing `validate` makes of AudioSet's class folders).

- validation: `lass_synthetic_validation.csv` (`source, noise, snr, caption`) + `lass_validation.json`
  + clean clips `lass_validation/<Index>.wav`; mixtures are built from the rows.
- evaluation synth: mixture files + a CSV of (file, query) rows (column names unverified: the
  plausible variants are accepted and the ones found are reported).
- evaluation real: `lass_real_evaluation.csv` (`file_name,query`) + recordings.
- AudioSep's benchmarks (`dcase9.data.benchmarks`): `EVALUATION_DIR/data/<name>/` holds the mixtures and
  references, `EVALUATION_DIR/metadata/<name>_eval.csv` the rows; a folder named like a benchmark under a
  `data` folder is read as that benchmark. Rows are read by position, as AudioSep's evaluators read them.

Mixture ids (they name the estimate files, `<id>.wav`):
- validation: `<source>__<noise>__<snr>`, e.g. `692211_12333864-hq__701692_6014995-hq__10`;
- evaluation: the mixture file name without its extension, e.g. `test-real-case-0`;
- benchmarks: the mixture file name without its extension (`mixture-12`; VGGSound: its `file_id`),
  AudioSet: the clip name AudioSep's evaluator uses, `class_id=0,index=003`.
A second, third... row with the same id gets `__2`, `__3` appended in file order. Ids or file names
that differ only by letter case or Unicode normalisation are one name on macOS and Windows: a
`name-collision` warning names both rows.

Parsing collects every problem as an `Issue` instead of stopping at the first one; the rows that
parse are kept so `validate` can report everything at once.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath

from dcase9.data.benchmarks import (AUDIOSET_LABELS_CSV, BENCHMARK_NAMES, BENCHMARK_SAMPLE_RATE, DATA_DIR,
                                    METADATA_DIR, MUSIC_CLASSES, Benchmark, get_benchmark)
from dcase9.errors import ConfigError, DataError
from dcase9.files import colliding_names, describe_non_file, name_collision

TASK9_SAMPLE_RATE = 16000  # = dcase9.audio.SAMPLE_RATE (the data layer's formats do not import audio code)


class SetKind(str, Enum):
    VALIDATION = "validation"
    EVAL_SYNTH = "eval-synth"
    EVAL_REAL = "eval-real"
    # AudioSep's benchmarks, named as their folders under evaluation/data (README order)
    VGGSOUND = "vggsound"
    MUSIC = "music"
    ESC50 = "esc50"
    AUDIOSET = "audioset"
    AUDIOCAPS = "audiocaps"
    CLOTHO = "clotho"

    @property
    def has_references(self) -> bool:
        return self is SetKind.VALIDATION or self.is_benchmark

    @property
    def is_benchmark(self) -> bool:
        return self.value in BENCHMARK_NAMES

    @property
    def benchmark(self) -> Benchmark | None:
        """The benchmark's description (`dcase9.data.benchmarks`); None for the Task 9 sets."""
        return get_benchmark(self.value) if self.is_benchmark else None

    @property
    def sample_rate(self) -> int:
        """The rate its audio is read, separated and scored at: 16 kHz (Task 9), 32 kHz (AudioSep's suite)."""
        return BENCHMARK_SAMPLE_RATE if self.is_benchmark else TASK9_SAMPLE_RATE


# Official file names (Zenodo 10886481 and 11425256); audio folders are the zip names.
OFFICIAL_CSV = {
    SetKind.VALIDATION: "lass_synthetic_validation.csv",
    SetKind.EVAL_SYNTH: "lass_synthetic_evaluation.csv",
    SetKind.EVAL_REAL: "lass_real_evaluation.csv",
}
OFFICIAL_AUDIO_DIR = {
    SetKind.VALIDATION: "lass_validation",
    SetKind.EVAL_SYNTH: "lass_evaluation_synth",
    SetKind.EVAL_REAL: "lass_evaluation_real",
}
VALIDATION_JSON = "lass_validation.json"

# Accepted header spellings, after normalisation (strip, lower case, spaces/hyphens -> "_").
VALIDATION_COLUMNS = {
    "source": ("source",),
    "noise": ("noise",),
    "snr": ("snr", "snr_db"),
    "query": ("caption", "query", "text"),
}
EVALUATION_COLUMNS = {
    "file": ("file_name", "filename", "file", "wav", "wav_file", "audio", "audio_file", "mixture",
             "mixture_file", "mixture_name", "fname", "path", "name"),
    "query": ("query", "caption", "text", "description", "prompt"),
}
AUDIO_EXTENSIONS = (".wav", ".flac")
SNR_RANGE = (-15, 15)
# What the toolkit accepts at all (README: "Values out of range"): an SNR beyond +-100 dB scales one clip
# by more than 1e5 against the other (nothing audible is left of it; 10**(snr/10) overflows past ~3000 dB),
# and a clip shorter than 0.1 s holds less than one STFT window of any system.
SNR_PLAUSIBLE_DB = 100
MIN_AUDIO_SECONDS = 0.1
MAX_NAME_BYTES = 255  # one file name on every common file system (ext4, APFS, NTFS in UTF-16 units)


def output_name_too_long(output_id: str) -> str | None:
    """Why `<output_id>.wav` cannot be a file name, or None when it can."""
    size = len(f"{output_id}.wav".encode())
    return (f"the output name {output_id[:40]}....wav would be {size} bytes; file systems allow {MAX_NAME_BYTES}"
            if size > MAX_NAME_BYTES else None)

_SAFE_NAME = re.compile(r"^[^/\\\x00-\x1f]+$")


@dataclass(frozen=True)
class Issue:
    """One problem found in a data set. Errors make it unusable; warnings do not."""

    severity: str  # "error" | "warning"
    code: str  # short stable slug, e.g. "caption-empty"
    message: str
    file: str | None = None
    row: int | None = None  # 1-based line number in the file
    field: str | None = None

    def where(self) -> str:
        parts = [p for p in (self.file, f"row {self.row}" if self.row else None,
                             f"field '{self.field}'" if self.field else None) if p]
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{self.severity}: {where + ': ' if where else ''}{self.message} [{self.code}]"


@dataclass(frozen=True)
class MixtureSpec:
    """One mixture to separate: its id, the text query, and where its audio comes from."""

    id: str
    query: str
    row: int  # 1-based line in the CSV
    source: str | None = None  # validation: Index of the target clip
    noise: str | None = None  # validation: Index of the interfering clip
    snr: int | None = None  # validation: target-to-noise ratio in dB
    file: str | None = None  # evaluation: mixture file name as written in the CSV; benchmarks: its path in the folder
    reference: str | None = None  # benchmarks: the reference's path in the folder
    group: str | None = None  # benchmarks: the class of the aggregate (AudioSet: class index; MUSIC: instrument)


@dataclass
class ClipEntry:
    """One entry of lass_validation.json."""

    index: str
    tags: list[str]
    captions: list[str]


@dataclass
class DataSet:
    """An evaluation set: where it lies, what kind it is, and its mixtures in CSV order."""

    root: Path
    kind: SetKind
    csv_path: Path
    audio_dir: Path
    mixtures: list[MixtureSpec]
    columns: dict[str, str]  # role ("source", "query", "file", ...) -> column name found
    json_path: Path | None = None
    clips: dict[str, ClipEntry] = field(default_factory=dict)  # validation JSON entries
    labels_path: Path | None = None  # AudioSet: class_labels_indices.csv (its queries)
    query_column: str | None = None  # benchmarks: the column the queries come from (AudioCaps: caption or labels)

    @property
    def has_references(self) -> bool:
        return self.kind.has_references

    @property
    def sample_rate(self) -> int:
        return self.kind.sample_rate

    def audio_path(self, name: str) -> Path:
        """Path of a clean clip (validation Index), of a mixture file (evaluation) or of a benchmark's file
        (its path in the folder)."""
        if self.kind is SetKind.VALIDATION:
            return self.audio_dir / f"{name}.wav"
        return self.audio_dir / name

    def files_of(self, mixture: MixtureSpec) -> list[Path]:
        """The audio files a mixture is read from: validation [source, noise]; evaluation [mixture];
        benchmarks [mixture, reference]."""
        if self.kind is SetKind.VALIDATION:
            return [self.audio_path(mixture.source or ""), self.audio_path(mixture.noise or "")]
        if self.kind.is_benchmark:
            return [self.audio_path(mixture.file or ""), self.audio_path(mixture.reference or "")]
        return [self.audio_path(mixture.file or "")]

    def describe(self) -> str:
        benchmark = self.kind.benchmark
        what = f"{benchmark.title} benchmark" if benchmark is not None else f"{self.kind.value} set"
        return f"{what}, {len(self.mixtures)} mixtures ({self.csv_path})"

    def input_paths(self) -> dict[str, Path | None]:
        """What a command reads of this set, by label, for `dcase9.files.check_no_overlap`."""
        return {"the data set": self.root, "its CSV": self.csv_path, "its audio folder": self.audio_dir,
                "its JSON": self.json_path, "its class labels": self.labels_path}


# --------------------------------------------------------------------------------------------
# Locating the files


def _normalise_header(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", cell.strip().lstrip("\ufeff").lower())


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for row in csv.reader(fh):
            if any(cell.strip() for cell in row):
                return [_normalise_header(c) for c in row]
    return []


def _kind_from_header(header: list[str], csv_name: str) -> SetKind | None:
    if {"source", "noise"} <= set(header):
        return SetKind.VALIDATION
    has_file = any(c in EVALUATION_COLUMNS["file"] for c in header)
    has_query = any(c in EVALUATION_COLUMNS["query"] for c in header)
    if has_file and has_query:
        name = csv_name.lower()
        if "real" in name:
            return SetKind.EVAL_REAL
        if "synth" in name:
            return SetKind.EVAL_SYNTH
        return None  # an evaluation CSV, but which one cannot be told from its name
    return None


def parse_kind(kind: SetKind | str | None) -> SetKind | None:
    """`--kind` as a SetKind; an unknown name is a user error naming the valid ones."""
    if kind is None or isinstance(kind, SetKind):
        return kind
    try:
        return SetKind(kind)
    except ValueError:
        raise ConfigError(f"unknown --kind {kind!r} (use one of: {', '.join(k.value for k in SetKind)})") from None


def benchmark_csv(data_folder: Path, kind: SetKind) -> Path:
    """Where AudioSep's layout keeps the metadata of the benchmark in `data_folder`
    (EVALUATION_DIR/data/<name>/ -> EVALUATION_DIR/metadata/<name>_eval.csv)."""
    benchmark = kind.benchmark
    assert benchmark is not None
    return Path(os.path.abspath(data_folder)).parent.parent / METADATA_DIR / benchmark.csv_name


def _benchmark_of_folder(root: Path) -> SetKind | None:
    """The benchmark a folder is, by AudioSep's layout: named like one, inside a `data` folder."""
    absolute = Path(os.path.abspath(root))  # not resolved: a linked data folder keeps its place in the layout
    if absolute.name in BENCHMARK_NAMES and absolute.parent.name == DATA_DIR:
        return SetKind(absolute.name)
    return None


def locate(data: str | Path, kind: SetKind | str | None = None,
           csv_path: str | Path | None = None) -> tuple[SetKind, Path, Path]:
    """Find (kind, csv, root) for a data folder (or a CSV file inside one).

    The kind is detected from the official CSV names first, then from AudioSep's layout (a folder
    `data/<benchmark>` whose CSV is `../../metadata/<benchmark>_eval.csv`), then from the CSV headers.
    """
    data = Path(data)
    if not data.exists():
        raise DataError("no such file or folder", file=data)
    if not data.is_dir() and describe_non_file(data) is not None:
        raise DataError(describe_non_file(data) or "", file=data)
    if data.is_file():
        csv_path, root = data, data.parent
    else:
        root = data
    wanted = parse_kind(kind)

    benchmark = wanted if wanted is not None and wanted.is_benchmark else None
    if benchmark is None and wanted is None and csv_path is None and data.is_dir() \
            and not any((root / name).is_file() for name in OFFICIAL_CSV.values()):
        benchmark = _benchmark_of_folder(root)
    if benchmark is not None:
        if data.is_file():
            raise DataError(f"a {benchmark.value} benchmark is read from its folder (EVALUATION_DIR/data/"
                            f"{benchmark.value}); give its CSV with --csv", file=data)
        found_csv = Path(csv_path) if csv_path is not None else benchmark_csv(root, benchmark)
        problem = describe_non_file(found_csv)
        if problem is not None:
            layout = "" if csv_path is not None else (
                f" (AudioSep's layout: EVALUATION_DIR/{METADATA_DIR}/{found_csv.name} next to "
                f"EVALUATION_DIR/{DATA_DIR}/{benchmark.value}/; or give the CSV with --csv)")
            raise DataError(f"the metadata CSV of the {benchmark.value} benchmark: {problem}{layout}", file=found_csv)
        return benchmark, found_csv, root

    if csv_path is not None:
        csv_path = Path(csv_path)
        problem = describe_non_file(csv_path)
        if problem is not None:
            raise DataError(f"CSV {problem}", file=csv_path)
        found = wanted or _detect_kind_of_csv(csv_path)
        if found is None:
            raise DataError("cannot tell which evaluation set this CSV belongs to; pass --kind "
                            "validation|eval-synth|eval-real", file=csv_path)
        return found, csv_path, root

    candidates: list[tuple[SetKind, Path]] = []
    for set_kind, name in OFFICIAL_CSV.items():
        if (root / name).is_file():
            candidates.append((set_kind, root / name))
    if not candidates:
        for path in sorted(root.glob("*.csv")):
            detected = _detect_kind_of_csv(path)
            if detected is not None:
                candidates.append((detected, path))
    if wanted is not None:
        candidates = [c for c in candidates if c[0] is wanted]
    if not candidates:
        expected = ", ".join(OFFICIAL_CSV.values())
        hint = ""
        if any((root.parent / OFFICIAL_CSV[kind]).is_file() for kind, name in OFFICIAL_AUDIO_DIR.items()
               if root.name == name) or (root.name in OFFICIAL_AUDIO_DIR.values() and any(root.glob("*.wav"))):
            hint = f"; this is a set's audio folder: give the folder that holds it and its CSV, {root.parent}"
        elif (root / METADATA_DIR).is_dir() and (root / DATA_DIR).is_dir():
            hint = (f". This looks like AudioSep's evaluation folder: give one benchmark as "
                    f"{root / DATA_DIR / '<name>'} ({', '.join(BENCHMARK_NAMES)}), or run them all with "
                    f"`dcase9 suite {root}`")
        raise DataError(f"no evaluation-set CSV found (expected one of {expected}, or a CSV with "
                        f"columns 'source, noise, snr, caption' or 'file_name, query'){hint}", file=root)
    if len(candidates) > 1:
        listed = "; ".join(f"{c[1].name} ({c[0].value})" for c in candidates)
        raise DataError(f"several evaluation sets here: {listed}. Choose one with --kind or --csv",
                        file=root)
    return candidates[0][0], candidates[0][1], root


def _detect_kind_of_csv(path: Path) -> SetKind | None:
    for set_kind, name in OFFICIAL_CSV.items():
        if path.name == name:
            return set_kind
    try:
        header = _read_header(path)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return _kind_from_header(header, path.name)


def _find_audio_dir(root: Path, kind: SetKind, names: Iterable[str]) -> Path:
    """The official zip folder if present, else a sub-folder holding the first files, else root."""
    official = root / OFFICIAL_AUDIO_DIR[kind]
    if official.is_dir():
        return official
    sample = [n for n, _ in zip(names, range(5), strict=False)]
    if not sample:
        return root
    if all((root / n).is_file() for n in sample):
        return root
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if all((sub / n).is_file() for n in sample):
            return sub
    return root


# --------------------------------------------------------------------------------------------
# Parsing


def is_safe_name(name: str) -> bool:
    """A bare file name: no folders, no '..', not absolute, no control characters."""
    return bool(name) and bool(_SAFE_NAME.match(name)) and name not in {".", ".."} \
        and not name.startswith("..") and ":" not in name[:2]


def has_text(value: str) -> bool:
    """A caption is text when it has at least one letter (the official CSV has a caption '0')."""
    return any(ch.isalpha() for ch in value)


class _Collector:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def error(self, code: str, message: str, file: Path | str | None = None, row: int | None = None,
              field: str | None = None) -> None:
        self.issues.append(Issue("error", code, message, str(file) if file else None, row, field))

    def warning(self, code: str, message: str, file: Path | str | None = None, row: int | None = None,
                field: str | None = None) -> None:
        self.issues.append(Issue("warning", code, message, str(file) if file else None, row, field))


def _read_rows(path: Path, issues: _Collector) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank CSV record, header included. Handles BOM and CRLF.

    No field of these CSVs spans lines, so a record that does is an unclosed quote swallowing the
    lines after it: it is reported at the line where it starts and left out (never read as one row).
    """
    end = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = []
            for cells in reader:
                start, end = end + 1, reader.line_num
                if any("\n" in cell or "\r" in cell for cell in cells):
                    span = f"runs over lines {start}-{end}" if end > start else "runs to the end of the file"
                    issues.error("csv-unclosed-quote", f"a quoted field starting on this line {span} (an unclosed "
                                 "quote?); none of those lines is read as a row", path, start)
                elif any(cell.strip() for cell in cells):
                    rows.append((reader.line_num, cells))
            return rows
    except UnicodeDecodeError as exc:
        issues.error("csv-encoding", f"not UTF-8 text ({exc.reason} at byte {exc.start})", path)
    except csv.Error as exc:
        issues.error("csv-syntax", f"malformed CSV in the record starting on this line: {exc}"
                     f"{_field_limit_hint(path, end + 1) if 'field limit' in str(exc) else ''}; the rest of "
                     "the file is not read", path, end + 1)
    except OSError as exc:
        issues.error("csv-unreadable", f"cannot read ({exc.strerror or exc})", path)
    return []


def _field_limit_hint(path: Path, line: int) -> str:
    """Why csv met a field past its 128 KiB limit: an unclosed quote running into the lines after it
    (the record's first line opens a quote), or one enormous field (it does not)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            first = next((text for number, text in enumerate(fh, 1) if number == line), "")
    except OSError:
        return ""
    if first.count('"') % 2 == 1:
        return " (an unclosed quote on this line runs into the lines after it?)"
    return f" (one field of this line is longer than {csv.field_size_limit():,} characters: not a caption)"


def _map_columns(header: list[str], roles: dict[str, tuple[str, ...]], path: Path,
                 issues: _Collector) -> dict[str, int] | None:
    positions: dict[str, int] = {}
    for role, spellings in roles.items():
        for i, name in enumerate(header):
            if name in spellings and role not in positions:
                positions[role] = i
        if role not in positions:
            issues.error("column-missing", f"no '{role}' column (accepted names: {', '.join(spellings)}); "
                         f"header is {header}", path, row=1)
    known = {i for i in positions.values()}
    for i, name in enumerate(header):
        if i not in known:
            issues.warning("column-unknown", f"unknown column '{name}' is ignored", path, row=1, field=name)
    return positions if len(positions) == len(roles) else None


def _cells_for_roles(cells: list[str], positions: dict[str, int], width: int, path: Path, line: int,
                     issues: _Collector) -> dict[str, str] | None:
    """Cells by role; a query in the last column may have been split at unquoted commas."""
    query_at = positions["query"]
    if len(cells) > width and query_at == width - 1:
        joined = ",".join(cells[query_at:])
        issues.warning("caption-unquoted-comma",
                       f"{len(cells)} fields where {width} were expected: the caption contains unquoted "
                       f"commas; read it as \"{joined}\"", path, line, "query")
        cells = cells[:query_at] + [joined]
    if len(cells) != width:
        issues.error("row-width", f"{len(cells)} fields where the header has {width}", path, line)
        return None
    return {role: cells[i] for role, i in positions.items()}


def _check_query(query: str, path: Path, line: int, column: str, issues: _Collector) -> bool:
    if not query.strip():
        issues.error("caption-empty", "empty caption", path, line, column)
        return False
    if not has_text(query):
        issues.warning("caption-not-text", f"caption {query!r} has no letters", path, line, column)
    return True


def _assign_ids(specs: list[MixtureSpec]) -> list[MixtureSpec]:
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        count = seen.get(spec.id, 0) + 1
        seen[spec.id] = count
        if count > 1:
            spec = MixtureSpec(**{**spec.__dict__, "id": f"{spec.id}__{count}"})
        out.append(spec)
    return out


def read_validation_json(path: Path, issues: _Collector) -> dict[str, ClipEntry]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        issues.error("json-unreadable", f"cannot read ({exc})", path)
        return {}
    except json.JSONDecodeError as exc:
        issues.error("json-syntax", f"invalid JSON: {exc.msg}", path, exc.lineno)
        return {}
    if not isinstance(entries, list):
        issues.error("json-layout", "expected a JSON list of {Index, Tags, Captions} objects", path)
        return {}
    clips: dict[str, ClipEntry] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("Index"), str) or not entry["Index"]:
            issues.error("json-entry", f"{where} has no string 'Index'", path, field="Index")
            continue
        index = entry["Index"]
        if index in clips:
            issues.error("json-duplicate", f"{where}: Index {index!r} appears twice", path, field="Index")
            continue
        tags = entry.get("Tags", [])
        if not isinstance(tags, list):
            issues.warning("json-tags", f"{where} ({index}): 'Tags' is not a list", path, field="Tags")
            tags = []
        captions = entry.get("Captions", [])
        if not isinstance(captions, list):
            issues.warning("json-captions", f"{where} ({index}): 'Captions' is not a list", path, field="Captions")
            captions = []
        for k, caption in enumerate(captions):
            if not isinstance(caption, str) or not has_text(caption):
                issues.warning("caption-not-text", f"{where} ({index}): caption {k + 1} is {caption!r}, "
                               "not text", path, field="Captions")
        clips[index] = ClipEntry(index, [str(t) for t in tags], [str(c) for c in captions])
    return clips


def _read_table(path: Path, roles: dict[str, tuple[str, ...]], issues: _Collector
                ) -> tuple[dict[str, str], list[tuple[int, dict[str, str]]]] | None:
    """The columns found (role -> header name) and the data rows as (line, cells by role).

    None when the CSV is unreadable, empty or lacks a column; rows of the wrong width are
    reported and left out.
    """
    rows = _read_rows(path, issues)
    if not rows:
        if not any(i.severity == "error" for i in issues.issues):
            issues.error("csv-empty", "the CSV has no header", path)
        return None
    header = [_normalise_header(c) for c in rows[0][1]]
    positions = _map_columns(header, roles, path, issues)
    if positions is None:
        return None
    records = []
    for line, raw in rows[1:]:
        cells = _cells_for_roles(raw, positions, len(header), path, line, issues)
        if cells is not None:
            records.append((line, cells))
    return {role: header[i] for role, i in positions.items()}, records


def _parse_validation(path: Path, clips: dict[str, ClipEntry] | None,
                      issues: _Collector) -> tuple[list[MixtureSpec], dict[str, str]]:
    table = _read_table(path, VALIDATION_COLUMNS, issues)
    if table is None:
        return [], {}
    columns, records = table
    specs: list[MixtureSpec] = []
    first_seen: dict[tuple[str, str, int, str], int] = {}
    for line, cells in records:
        ok = True
        source, noise = cells["source"].strip(), cells["noise"].strip()
        for role, name in (("source", source), ("noise", noise)):
            if not is_safe_name(name):
                issues.error("unsafe-name", f"{role} {name!r} is not a bare clip name (it would point "
                             "outside the audio folder)", path, line, columns[role])
                ok = False
            elif clips is not None and name not in clips:
                issues.error("unknown-clip", f"{role} {name!r} is not in {VALIDATION_JSON}", path, line,
                             columns[role])
                ok = False
        if ok and source == noise:
            issues.warning("noise-is-source", f"noise {noise!r} is the target clip itself", path, line,
                           columns["noise"])
        snr_text = cells["snr"].strip()
        try:
            snr = int(snr_text)  # the evaluator's own parsing: int(snr)
        except ValueError:
            try:
                float(snr_text)
                issues.error("snr-not-integer", f"SNR {snr_text!r} is not an integer (the official "
                             "evaluator parses it with int())", path, line, columns["snr"])
            except ValueError:
                issues.error("snr-not-number", f"SNR {snr_text!r} is not a number", path, line, columns["snr"])
            ok = False
            snr = 0
        else:
            if not SNR_RANGE[0] <= snr <= SNR_RANGE[1]:
                issues.warning("snr-range", f"SNR {snr} dB is outside the challenge's range "
                               f"{SNR_RANGE[0]}..{SNR_RANGE[1]}", path, line, columns["snr"])
        query = cells["query"]  # kept verbatim: the evaluator embeds the text as written
        ok = _check_query(query, path, line, columns["query"], issues) and ok
        if not ok:
            continue
        key = (source, noise, snr, query)
        if key in first_seen:
            issues.error("row-duplicate", f"duplicate of row {first_seen[key]}", path, line)
            continue
        first_seen[key] = line
        specs.append(MixtureSpec(id=f"{source}__{noise}__{snr}", query=query, row=line,
                                 source=source, noise=noise, snr=snr))
    return _assign_ids(specs), columns


def _parse_evaluation(path: Path, issues: _Collector) -> tuple[list[MixtureSpec], dict[str, str]]:
    table = _read_table(path, EVALUATION_COLUMNS, issues)
    if table is None:
        return [], {}
    columns, records = table
    specs: list[MixtureSpec] = []
    first_seen: dict[tuple[str, str], int] = {}
    for line, cells in records:
        name = cells["file"].strip()
        query = cells["query"]
        ok = True
        if not is_safe_name(name):
            issues.error("unsafe-name", f"file name {name!r} is not a bare file name (it would point "
                         "outside the audio folder or the output folder)", path, line, columns["file"])
            ok = False
        elif not name.lower().endswith(AUDIO_EXTENSIONS):
            issues.warning("file-extension", f"file name {name!r} has no .wav extension", path, line,
                           columns["file"])
        ok = _check_query(query, path, line, columns["query"], issues) and ok
        if not ok:
            continue
        key = (name, query)
        if key in first_seen:
            issues.error("row-duplicate", f"duplicate of row {first_seen[key]}", path, line)
            continue
        first_seen[key] = line
        stem = name
        for ext in AUDIO_EXTENSIONS:
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
        specs.append(MixtureSpec(id=stem, query=query, row=line, file=name))
    return _assign_ids(specs), columns


def _warn_name_collisions(specs: list[MixtureSpec], kind: SetKind, path: Path, columns: dict[str, str],
                          issues: _Collector) -> None:
    """Warn, once per pair of rows, about file names and mixture ids that differ here but are one name
    on a case-insensitive or normalising file system (macOS, Windows), where the organisers unpack."""
    files: list[tuple[str, MixtureSpec]] = []
    for spec in specs:
        if kind is SetKind.VALIDATION:
            files += [(f"{spec.source}.wav", spec), (f"{spec.noise}.wav", spec)]
        else:
            files.append((spec.file or "", spec))
    warned: set[tuple[int, int]] = set()
    checks = (("file name", files, "macOS and Windows read them as one file"),
              ("mixture id", [(spec.id, spec) for spec in specs],
               "on macOS and Windows their outputs (<id>.wav) are one file, and so are their entries in a package"))
    for what, names, consequence in checks:
        for (first_name, first), (name, later) in colliding_names(names, lambda pair: pair[0]):
            if (first.row, later.row) in warned:
                continue
            warned.add((first.row, later.row))
            issues.warning("name-collision", f"{what} {name!r} and {first_name!r} of row {first.row} differ only "
                           f"by {name_collision(first_name, name)}: {consequence}; rename one", path, later.row,
                           columns.get("file") if what == "file name" else None)


# --------------------------------------------------------------------------------------------
# AudioSep's benchmarks (dcase9.data.benchmarks says what its evaluators do)


def _folder_path(text: str) -> str | None:
    """A path under a benchmark's folder as its CSV writes it (`data/mix_wav/x.wav`), or None when it would
    point outside the folder (absolute, '..', control characters, backslashes)."""
    parts = PurePosixPath(text).parts
    if not text or text.startswith("/") or not parts or not all(is_safe_name(part) for part in parts):
        return None
    return "/".join(parts)


def read_audioset_labels(path: Path, issues: _Collector) -> list[str | None] | None:
    """The `display_name` of each class, by position (AudioSep: `df['display_name'].tolist()`, then
    `{i: label for i, label in enumerate(LABELS)}`); None when the file cannot be used."""
    problem = describe_non_file(path)
    if problem is not None:
        issues.error("labels-missing", f"{problem}: AudioSep's AudioSet evaluator queries each class with its "
                     f"display_name from {AUDIOSET_LABELS_CSV}, which belongs next to audioset_eval.csv", path)
        return None
    rows = _read_rows(path, issues)
    if not rows:
        if not any(i.severity == "error" for i in issues.issues):
            issues.error("csv-empty", "the CSV has no header", path)
        return None
    header = [_normalise_header(c) for c in rows[0][1]]
    if "display_name" not in header:
        issues.error("column-missing", f"no 'display_name' column; header is {header}", path, row=1)
        return None
    at = header.index("display_name")
    index_at = header.index("index") if "index" in header else None
    labels: list[str | None] = []
    for position, (line, cells) in enumerate(rows[1:]):
        if len(cells) != len(header):
            issues.error("row-width", f"{len(cells)} fields where the header has {len(header)}", path, line)
            labels.append(None)
            continue
        if index_at is not None and cells[index_at].strip() != str(position):
            issues.warning("labels-index", f"index {cells[index_at]!r} on the row of class {position}: AudioSep "
                           "takes the labels by position, so this label queries class_id="
                           f"{position}", path, line, "index")
        labels.append(cells[at] if _check_query(cells[at], path, line, "display_name", issues) else None)
    return labels


def _parse_benchmark(kind: SetKind, path: Path, labels_path: Path | None, query: str | None,
                     issues: _Collector) -> tuple[list[MixtureSpec], dict[str, str]]:
    benchmark = kind.benchmark
    assert benchmark is not None
    query = query or benchmark.query_default
    rows = _read_rows(path, issues)
    if not rows:
        if not any(i.severity == "error" for i in issues.issues):
            issues.error("csv-empty", "the CSV has no header", path)
        return [], {}
    expected = benchmark.header
    header = [_normalise_header(c) for c in rows[0][1]]
    if header != list(expected):
        issues.warning("header-differs", f"header is {header}; AudioSep's evaluator skips the header and reads the "
                       f"columns by position as {', '.join(expected)}", path, rows[0][0])
    labels = read_audioset_labels(labels_path, issues) if kind is SetKind.AUDIOSET and labels_path else None
    if kind is SetKind.VGGSOUND:
        columns = {"id": "file_id", "file": "mix_wav", "reference": "s0_wav", "query": "s0_text"}
    elif kind is SetKind.AUDIOSET:
        columns = {"id": "idx", "file": "noise_wav", "reference": "src_wav", "query": "caption"}
    else:
        columns = {"id": "idx", "query": query}
    query_at = expected.index(columns["query"]) if columns["query"] in expected else 1
    specs: list[MixtureSpec] = []
    first_seen: dict[str, int] = {}
    for line, cells in rows[1:]:
        if len(cells) != len(expected):
            issues.error("row-width", f"{len(cells)} fields where AudioSep's evaluator unpacks {len(expected)} "
                         f"({', '.join(expected)})", path, line)
            continue
        text = cells[query_at]  # verbatim: the evaluator embeds the text as written
        if kind is SetKind.AUDIOSET:
            spec = _audioset_row(cells, line, labels, path, issues)
        elif kind is SetKind.VGGSOUND:
            spec = _vggsound_row(cells, line, path, issues)
        else:
            spec = _indexed_row(kind, cells, line, text, path, issues)
        if spec is None:
            continue
        if not (kind is SetKind.AUDIOSET and labels is not None) \
                and not _check_query(spec.query, path, line, columns["query"], issues):
            continue  # (AudioSet's queries are its labels, checked in their own file)
        if spec.id in first_seen:
            issues.warning("id-duplicate", f"{columns['id']} {cells[0]!r} is also on row {first_seen[spec.id]}: "
                           "AudioSep's evaluator scores the same files once per row", path, line, columns["id"])
        else:
            first_seen[spec.id] = line
        specs.append(spec)
    return _assign_ids(specs), columns


def _indexed_row(kind: SetKind, cells: list[str], line: int, text: str, path: Path,
                 issues: _Collector) -> MixtureSpec | None:
    """AudioCaps, Clotho, ESC-50, MUSIC: `segment-{idx}.wav` is the reference, `mixture-{idx}.wav` the mixture."""
    idx = cells[0]
    mixture, reference = f"mixture-{idx}.wav", f"segment-{idx}.wav"
    if not idx or not is_safe_name(mixture):
        issues.error("unsafe-name", f"idx {idx!r} does not make a file name in the folder (AudioSep reads "
                     f"{mixture!r})", path, line, "idx")
        return None
    group = None
    if kind is SetKind.MUSIC:
        if text not in MUSIC_CLASSES:
            issues.error("unknown-class", f"caption {text!r} is none of MUSIC's ten instruments "
                         f"({', '.join(MUSIC_CLASSES)}); AudioSep's evaluator groups its aggregate by them (and "
                         "stops at this row)", path, line, "caption")
            return None
        group = text
    return MixtureSpec(id=mixture[:-4], query=text, row=line, file=mixture, reference=reference, group=group)


def _vggsound_row(cells: list[str], line: int, path: Path, issues: _Collector) -> MixtureSpec | None:
    """`file_id, mix_wav, s0_wav, s0_text, s1_wav, s1_text`: s0 is the target, queried by s0_text."""
    file_id, mix_wav, s0_wav, s0_text = cells[:4]
    ok = True
    if not is_safe_name(file_id) or output_name_too_long(file_id):
        issues.error("unsafe-name", f"file_id {file_id!r} cannot name an output file", path, line, "file_id")
        ok = False
    paths = {}
    for column, value in (("mix_wav", mix_wav), ("s0_wav", s0_wav)):
        paths[column] = _folder_path(value)
        if paths[column] is None:
            issues.error("unsafe-name", f"{column} {value!r} is not a path inside the benchmark's folder", path,
                         line, column)
            ok = False
    if not ok:
        return None
    return MixtureSpec(id=file_id, query=s0_text, row=line, file=paths["mix_wav"], reference=paths["s0_wav"])


_AUDIOSET_FILE = re.compile(r"(?P<name>.+),(?P<part>mixture|source)\.wav")


def _audioset_row(cells: list[str], line: int, labels: list[str | None] | None, path: Path,
                  issues: _Collector) -> MixtureSpec | None:
    """`idx, caption, src_wav, noise_wav`: idx is the class, src_wav `.../class_id=N/<name>,source.wav` and
    noise_wav (despite its name) the mixture `.../class_id=N/<name>,mixture.wav`."""
    idx, caption, src_wav, noise_wav = cells
    try:
        class_id = int(idx)
    except ValueError:
        class_id = -1
    if class_id < 0 or (labels is not None and class_id >= len(labels)):
        known = f" (0..{len(labels) - 1}, the rows of {AUDIOSET_LABELS_CSV})" if labels else ""
        issues.error("unknown-class", f"idx {idx!r} is not a class index{known}", path, line, "idx")
        return None
    names = {}
    for column, value, part in (("src_wav", src_wav, "source"), ("noise_wav", noise_wav, "mixture")):
        parts = PurePosixPath(value).parts
        found = _AUDIOSET_FILE.fullmatch(parts[-1]) if parts else None
        if len(parts) < 2 or parts[-2] != f"class_id={class_id}" or found is None or found["part"] != part \
                or _folder_path("/".join(parts[-2:])) is None:
            issues.error("path-layout", f"{column} {value!r} is not .../class_id={class_id}/<name>,{part}.wav (the "
                         "files AudioSep's evaluator lists)", path, line, column)
            return None
        names[column] = found["name"]
    if names["src_wav"] != names["noise_wav"]:
        issues.error("path-layout", f"src_wav and noise_wav name different clips ({names['src_wav']!r}, "
                     f"{names['noise_wav']!r})", path, line, "noise_wav")
        return None
    name = names["src_wav"]
    label = labels[class_id] if labels is not None else None
    if labels is not None and label is None:
        return None  # its labels row is broken (reported)
    if label is not None and label != caption:
        issues.warning("caption-not-label", f"caption {caption!r}: AudioSep's evaluator queries class {class_id} with "
                       f"its label {label!r} from {AUDIOSET_LABELS_CSV}, not with this column", path, line, "caption")
    folder = f"class_id={class_id}"
    return MixtureSpec(id=name, query=label if label is not None else caption, row=line,
                       file=f"{folder}/{name},mixture.wav", reference=f"{folder}/{name},source.wav",
                       group=str(class_id))


def check_query_choice(kind: SetKind, query: str | None) -> None:
    """`--query-column` where a benchmark offers a choice (AudioCaps: caption or labels); refused elsewhere."""
    if query is None:
        return
    benchmark = kind.benchmark
    if benchmark is None:
        raise ConfigError(f"--query-column chooses a benchmark's query column; the {kind.value} set has one query per row")
    if query not in benchmark.queries:
        raise ConfigError(f"--query-column {query!r}: the {benchmark.title} benchmark's queries come from "
                          f"{' or '.join(benchmark.queries)}")


def parse_dataset(data: str | Path, kind: SetKind | str | None = None,
                  csv_path: str | Path | None = None, *, query_column: str | None = None) -> tuple[DataSet, list[Issue]]:
    """Read an evaluation set's metadata; returns the usable mixtures and every problem found.

    `query_column`: for a benchmark that offers two (AudioCaps), the column the queries come from (default: the
    one AudioSep's benchmark.py uses). Raises DataError only when not even the kind and CSV can be determined.
    """
    set_kind, csv_file, root = locate(data, kind, csv_path)
    query = query_column
    check_query_choice(set_kind, query)
    issues = _Collector()
    json_path: Path | None = None
    labels_path: Path | None = None
    clips: dict[str, ClipEntry] = {}
    if set_kind.is_benchmark:
        labels_path = csv_file.parent / AUDIOSET_LABELS_CSV if set_kind is SetKind.AUDIOSET else None
        specs, columns = _parse_benchmark(set_kind, csv_file, labels_path, query, issues)
        names = []
    elif set_kind is SetKind.VALIDATION:
        json_path = root / VALIDATION_JSON
        if json_path.is_file():
            clips = read_validation_json(json_path, issues)
        else:
            issues.warning("json-missing", f"{VALIDATION_JSON} not found: sources cannot be checked "
                           "against the clip list (the mixtures do not need it)", root)
            json_path = None
        specs, columns = _parse_validation(csv_file, clips if json_path else None, issues)
        names = [s.source + ".wav" for s in specs if s.source]
    else:
        specs, columns = _parse_evaluation(csv_file, issues)
        names = [s.file for s in specs if s.file]
    _warn_name_collisions(specs, set_kind, csv_file, columns, issues)
    audio_dir = root if set_kind.is_benchmark else _find_audio_dir(root, set_kind, names)
    benchmark = set_kind.benchmark
    dataset = DataSet(root=root, kind=set_kind, csv_path=csv_file, audio_dir=audio_dir, mixtures=specs,
                      columns=columns, json_path=json_path, clips=clips, labels_path=labels_path,
                      query_column=(query or benchmark.query_default) if benchmark is not None else None)
    if not specs and not any(i.severity == "error" for i in issues.issues):
        issues.error("no-mixtures", "the CSV lists no mixtures", csv_file)
    return dataset, issues.issues


def open_dataset(data: str | Path | DataSet, kind: SetKind | str | None = None,
                 csv_path: str | Path | None = None, *, query_column: str | None = None) -> DataSet:
    """Read an evaluation set, raising DataError (with the first problems) if its metadata is unusable.
    `query`: see `parse_dataset`."""
    if isinstance(data, DataSet):
        return data
    dataset, issues = parse_dataset(data, kind, csv_path, query_column=query_column)
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        shown = "\n  ".join(str(e) for e in errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise DataError(f"{len(errors)} problem(s) in the metadata; run `dcase9 validate {dataset.root}` "
                        f"for the full report:\n  {shown}{more}")
    return dataset
