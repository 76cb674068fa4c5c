"""Readers for the three Task 9 evaluation-set layouts (metadata only; no audio is read here).

- validation: `lass_synthetic_validation.csv` (`source, noise, snr, caption`) + `lass_validation.json`
  + clean clips `lass_validation/<Index>.wav`; mixtures are built from the rows.
- evaluation synth: mixture files + a CSV of (file, query) rows (column names unverified: the
  plausible variants are accepted and the ones found are reported).
- evaluation real: `lass_real_evaluation.csv` (`file_name,query`) + recordings.

Mixture ids (they name the estimate files, `<id>.wav`):
- validation: `<source>__<noise>__<snr>`, e.g. `692211_12333864-hq__701692_6014995-hq__10`;
- evaluation: the mixture file name without its extension, e.g. `test-real-case-0`.
A second, third... row with the same id gets `__2`, `__3` appended in file order. Ids or file names
that differ only by letter case or Unicode normalisation are one name on macOS and Windows: a
`name-collision` warning names both rows.

Parsing collects every problem as an `Issue` instead of stopping at the first one; the rows that
parse are kept so `validate` can report everything at once.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from dcase9.errors import ConfigError, DataError
from dcase9.files import colliding_names, describe_non_file, name_collision


class SetKind(str, Enum):
    VALIDATION = "validation"
    EVAL_SYNTH = "eval-synth"
    EVAL_REAL = "eval-real"

    @property
    def has_references(self) -> bool:
        return self is SetKind.VALIDATION


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
    file: str | None = None  # evaluation: mixture file name as written in the CSV


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

    @property
    def has_references(self) -> bool:
        return self.kind.has_references

    def audio_path(self, name: str) -> Path:
        """Path of a clean clip (validation Index) or of a mixture file (evaluation)."""
        if self.kind is SetKind.VALIDATION:
            return self.audio_dir / f"{name}.wav"
        return self.audio_dir / name

    def files_of(self, mixture: MixtureSpec) -> list[Path]:
        if self.kind is SetKind.VALIDATION:
            return [self.audio_path(mixture.source or ""), self.audio_path(mixture.noise or "")]
        return [self.audio_path(mixture.file or "")]

    def describe(self) -> str:
        return f"{self.kind.value} set, {len(self.mixtures)} mixtures ({self.csv_path})"

    def input_paths(self) -> dict[str, Path | None]:
        """What a command reads of this set, by label, for `dcase9.files.check_no_overlap`."""
        return {"the data set": self.root, "its CSV": self.csv_path, "its audio folder": self.audio_dir,
                "its JSON": self.json_path}


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


def locate(data: str | Path, kind: SetKind | str | None = None,
           csv_path: str | Path | None = None) -> tuple[SetKind, Path, Path]:
    """Find (kind, csv, root) for a data folder (or a CSV file inside one).

    The kind is detected from the official CSV names first, then from the CSV headers.
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
    sample = [n for n, _ in zip(names, range(5))]
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


def parse_dataset(data: str | Path, kind: SetKind | str | None = None,
                  csv_path: str | Path | None = None) -> tuple[DataSet, list[Issue]]:
    """Read an evaluation set's metadata; returns the usable mixtures and every problem found.

    Raises DataError only when not even the kind and CSV can be determined.
    """
    set_kind, csv_file, root = locate(data, kind, csv_path)
    issues = _Collector()
    json_path: Path | None = None
    clips: dict[str, ClipEntry] = {}
    if set_kind is SetKind.VALIDATION:
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
    audio_dir = _find_audio_dir(root, set_kind, names)
    dataset = DataSet(root=root, kind=set_kind, csv_path=csv_file, audio_dir=audio_dir, mixtures=specs,
                      columns=columns, json_path=json_path, clips=clips)
    if not specs and not any(i.severity == "error" for i in issues.issues):
        issues.error("no-mixtures", "the CSV lists no mixtures", csv_file)
    return dataset, issues.issues


def open_dataset(data: str | Path | DataSet, kind: SetKind | str | None = None,
                 csv_path: str | Path | None = None) -> DataSet:
    """Read an evaluation set, raising DataError (with the first problems) if its metadata is unusable."""
    if isinstance(data, DataSet):
        return data
    dataset, issues = parse_dataset(data, kind, csv_path)
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        shown = "\n  ".join(str(e) for e in errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise DataError(f"{len(errors)} problem(s) in the metadata; run `dcase9 validate {dataset.root}` "
                        f"for the full report:\n  {shown}{more}")
    return dataset
