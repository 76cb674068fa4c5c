"""`dcase9 separate`: a user's own recordings, any format, rate, channel count and length, by any query.

One output per recording and query, in a folder that says which is which:

    OUT/<recording>/<query>.wav             the estimate: the recording's rate, channels and length
    OUT/<recording>/<query>.residual.wav    with --residual: the recording minus the estimate
    OUT/separated.csv                       every output here: recording, query, files
    OUT/dcase9-run.json, dcase9-outputs.jsonl   the manifest and ledger of `dcase9.outputs`

`<recording>` is the file's name without its suffix and `<query>` the query's words (lower case, `_`
between words; an audio example is `audio-<its name>`, text and example `<words>+audio-<name>`), both
cut to 80 bytes and kept to letters, digits, `_` and `-`, so they are names on every file system. Two
recordings (or queries) of one run whose names would be one file on a case-insensitive disk both get
the first 8 hex digits of the sha256 of their path (query) appended: names that depend on nothing but
the file and the query, so a re-run finds its outputs again.

A folder gathers the outputs of every recording separated into it by one system and one output
format (`identity`: the system, its weights and options, format, `--mono`, `--residual`); each
output is resumed by `infer`'s rules (`dcase9.outputs`): kept while its ledger record still
matches the recording (path, size, modification time) and the query, computed again otherwise.
"""

from __future__ import annotations

import csv
import io
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dcase9.audio import AudioWriter, Recording, non_finite_count, output_format, probe_recording, read_recording
from dcase9.data.formats import MIN_AUDIO_SECONDS, is_safe_name
from dcase9.engine import Separator, environment_versions, refuse_reference_system
from dcase9.errors import ConfigError, DataError, Dcase9Error
from dcase9.models.clap.query import MAX_AUDIO_QUERY_SECONDS
from dcase9.files import check_no_overlap, name_fold, require_file, require_folder, sha256_text, write_text_atomic
from dcase9.outputs import OutputFolder, OutputSources, Problem, file_identity
from dcase9.progress import progress_bar

INDEX_NAME = "separated.csv"
RESIDUAL_SUFFIX = ".residual"
NAME_BYTES = 80  # a recording's or query's part of an output name (with a suffix, far below 255)
_NOT_NAME = re.compile(r"[^\w-]+")  # \w: Unicode letters and digits, and _
# Names Windows reserves whatever the suffix (a folder or file `con` cannot be made there).
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


# -- queries and jobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What to separate: a text (`-q`), an audio example of the sound (`--query-audio`), or both (their CLAP
    embeddings' normalised mean: `dcase9.models.clap.query`)."""

    text: str | None = None
    audio: Path | None = None

    def describe(self) -> str:
        example = f"the example {self.audio}" if self.audio is not None else ""
        return " + ".join(part for part in (repr(self.text) if self.text is not None else "", example) if part)

    def name(self) -> str:
        """The query's part of an output name (before collisions are handled)."""
        text = (safe_name(self.text, lower=True) or "query") if self.text is not None else ""
        example = f"audio-{safe_name(self.audio.stem, lower=True) or 'example'}" if self.audio is not None else ""
        return "+".join(part for part in (text, example) if part)

    def key(self) -> str:
        return f"{self.text}\x00{self.audio.resolve() if self.audio is not None else ''}"

    def source(self) -> dict[str, Any]:
        """What an output computed for this query depends on (the ledger compares it on re-runs)."""
        source: dict[str, Any] = {"query": self.text}
        if self.audio is not None:
            source["query_audio"] = {"path": str(self.audio.resolve()), "file": file_identity(self.audio)}
        return source


def queries_of(texts: Sequence[str], examples: Sequence[str | Path]) -> list[Query]:
    """The queries of `-q` texts and `--query-audio` examples: one each; given both, the k-th text and the
    k-th example make one query (refused unless as many of each are given). An empty text is refused."""
    for text in texts:
        if not text.strip():
            raise ConfigError(f"an empty query ({text!r}): say what to separate, e.g. -q \"a dog barks\"")
    if texts and examples and len(texts) != len(examples):
        raise ConfigError(f"{len(texts)} -q text(s) and {len(examples)} --query-audio example(s): given together, "
                          "the k-th text and the k-th example make one query, so give as many of each (or "
                          "separate by texts and by examples in two runs)")
    if texts and examples:
        return [Query(text, Path(example)) for text, example in zip(texts, examples, strict=True)]
    return [Query(text) for text in texts] + [Query(audio=Path(example)) for example in examples]


@dataclass(frozen=True)
class Job:
    """One output to compute: a recording and a query. `id` is the output's name in the ledger and its
    path under the folder, without suffix: `<recording>/<query>`; `row`: its line of a --queries file."""

    id: str
    input: Path
    query: Query
    row: int | None = None


def safe_name(text: str, *, lower: bool) -> str:
    """`text` as a file name on every disk: letters, digits, `_` and `-` (other runs of characters become
    `_`; no dots, so never hidden, `..` or a suffix), at most `NAME_BYTES` bytes of UTF-8 (NFC), not a
    name Windows reserves. Empty when nothing of `text` is left."""
    text = unicodedata.normalize("NFC", text.casefold() if lower else text)
    name = _NOT_NAME.sub("_", text).strip("_-")
    encoded = name.encode("utf-8")[:NAME_BYTES]
    name = encoded.decode("utf-8", errors="ignore").strip("_-")
    return name + "_" if name.upper() in _RESERVED else name


def unique_names(keys: Iterable[str], name_of: dict[str, str]) -> dict[str, str]:
    """A name for each key: `name_of[key]`, unless another key's name is the same name on a case-insensitive
    or normalising disk (`name_fold`): then each of them gets `-` and 8 hex digits of its key's sha256."""
    keys = list(dict.fromkeys(keys))
    by_fold: dict[str, list[str]] = {}
    for key in keys:
        by_fold.setdefault(name_fold(name_of[key]), []).append(key)
    return {key: name_of[key] if len(by_fold[name_fold(name_of[key])]) == 1
            else f"{name_of[key]}-{sha256_text(key)[:8]}" for key in keys}


def plan_jobs(pairs: Sequence[tuple[Path, Query, int | None]]) -> list[Job]:
    """The jobs of (recording, query, row) pairs, named (see the module); a pair given twice is one job."""
    inputs = {str(path.resolve()): path for path, _, _ in pairs}
    input_names = unique_names(inputs, {key: safe_name(path.stem, lower=False) or "recording"
                                        for key, path in inputs.items()})
    queries = {query.key(): query for _, query, _ in pairs}
    query_names = unique_names(queries, {key: query.name() for key, query in queries.items()})
    jobs: dict[str, Job] = {}
    for path, query, row in pairs:
        output_id = f"{input_names[str(path.resolve())]}/{query_names[query.key()]}"
        jobs.setdefault(output_id, Job(output_id, path, query, row))
    return list(jobs.values())


# Column names of a --queries file (the first that is present is used).
QUERY_FILE_COLUMNS = {
    "file": ("file", "path", "input", "recording", "audio", "mixture", "filename", "file_name"),
    "query": ("query", "text", "caption", "description", "prompt"),
    "query_audio": ("query_audio", "audio_query", "example"),  # optional
}


def read_query_pairs(path: str | Path) -> tuple[list[tuple[Path, Query, int]], list[Problem]]:
    """The (recording, query, line) pairs of a CSV with a header (`file` and `query` columns, optionally
    `query_audio`: an example of the sound; or the names in `QUERY_FILE_COLUMNS`); relative paths are
    taken from the CSV's folder. A row without a file, or with neither a query nor an example, is a
    problem naming its line (the other rows still run)."""
    csv_file = require_file(path, "--queries")
    try:
        text = csv_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=csv_file) from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise DataError(f"not a CSV file ({exc})", file=csv_file) from None
    if not rows:
        raise DataError("empty: expected a header (file,query) and one row per recording and query", file=csv_file)
    header = [cell.strip().lower() for cell in rows[0]]
    columns = {}
    for role, names in QUERY_FILE_COLUMNS.items():
        found = next((header.index(name) for name in names if name in header), None)
        if found is None and role != "query_audio":
            raise DataError(f"no {role} column (its header names {', '.join(header) or 'nothing'}; expected one "
                            f"of {', '.join(names)})", file=csv_file, row=1)
        if found is not None:
            columns[role] = found
    pairs, problems = [], []
    for line, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        get = {role: cells[k].strip() if k < len(cells) else "" for role, k in columns.items()}
        where = f"{csv_file}, row {line}"
        if not get["file"]:
            problems.append(Problem(where, f"{where}, field 'file': empty: name the recording to separate"))
        elif not get["query"] and not get.get("query_audio"):
            problems.append(Problem(where, f"{where}, field 'query': an empty query: say what to separate"))
        else:
            example = Path(get["query_audio"]) if get.get("query_audio") else None
            query = Query(get["query"] or None, csv_file.parent / example if example and not example.is_absolute()
                          else example)
            recording = Path(get["file"])
            pairs.append((recording if recording.is_absolute() else csv_file.parent / recording, query, line))
    return pairs, problems


# -- the output folder -----------------------------------------------------------------------------


class RecordingSources(OutputSources):
    """The jobs of a `separate` run as the sources of its outputs (`dcase9.outputs`)."""

    KIND = "recordings"

    def __init__(self, jobs: Sequence[Job]):
        super().__init__(jobs)

    def source_of(self, item: Job) -> dict[str, Any]:
        return {"input": str(item.input.resolve()), "file": file_identity(item.input), **item.query.source()}

    def manifest_entry(self) -> dict[str, Any]:
        return {"kind": self.KIND}

    def accepts(self, previous: Any) -> str | None:
        if isinstance(previous, dict) and previous.get("kind") == self.KIND:
            return None
        return "holds outputs of another command than `dcase9 separate` (its manifest names no recordings)"

    def is_output_id(self, output_id: str) -> bool:
        parts = output_id.split("/")
        return len(parts) == 2 and all(is_safe_name(part) and not part.startswith(".") for part in parts)


@dataclass
class SeparatedOutput:
    """Where the output of one recording and query is: written by this run, or `kept` from an earlier one."""

    input: Path
    query: str
    estimate: Path
    residual: Path | None
    kept: bool


@dataclass
class SeparateResult:
    """What `separate_recordings` did: its folder, each output (written or kept), the recordings and
    rows left out (and why), its time and the audio it separated."""

    out: Path
    outputs: list[SeparatedOutput]
    problems: list[Problem]
    seconds: float
    audio_seconds: float
    device: str
    manifest: Path
    index: Path

    @property
    def written(self) -> int:
        return sum(not output.kept for output in self.outputs)

    @property
    def kept(self) -> int:
        return sum(output.kept for output in self.outputs)


class NothingToSeparate(Dcase9Error):
    """Every recording (or row) was refused: the command could not run (exit 2)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        listed = "\n".join(f"  {problem.message}" for problem in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"nothing to separate: {len(problems)} input(s) refused\n{listed}{more}")


@dataclass
class SeparationPlan:
    """The jobs whose recordings can be separated, those recordings and the audio examples (by resolved
    csv_file), and the recordings, examples and rows refused (one problem each, naming the file or row)."""

    jobs: list[Job]
    recordings: dict[str, Recording]
    problems: list[Problem]
    examples: dict[str, Recording] = field(default_factory=dict)


def plan_separation(pairs: Sequence[tuple[Path, Query, int | None]], problems: Sequence[Problem] = ()) -> SeparationPlan:
    """Name the jobs of `pairs` (`plan_jobs`) and probe each recording once (`probe_recording`): one that
    cannot be used (unreadable, a format libsndfile lacks, shorter than 0.1 s, silent, NaN/inf) is left
    out with a problem naming it. `problems` (rows of a --queries file) are passed on. No job left:
    `NothingToSeparate` (exit 2)."""
    jobs = plan_jobs(pairs)
    problems = list(problems)
    recordings: dict[str, Recording] = {}
    for key, path in {str(job.input.resolve()): job.input for job in jobs}.items():
        try:
            recordings[key] = probe_recording(path, min_seconds=MIN_AUDIO_SECONDS)
        except DataError as exc:
            problems.append(Problem(str(path), str(exc)))
    examples: dict[str, Recording] = {}
    for key, path in {str(j.query.audio.resolve()): j.query.audio for j in jobs if j.query.audio is not None}.items():
        try:
            examples[key] = example = probe_recording(path, min_seconds=MIN_AUDIO_SECONDS)
            if example.seconds > MAX_AUDIO_QUERY_SECONDS:
                raise DataError(f"an audio example of {example.seconds:.0f} s; an example of the sound wanted lasts "
                                f"seconds (CLAP hears 10 s at a time; at most {MAX_AUDIO_QUERY_SECONDS:g} s)", file=path)
        except DataError as exc:
            examples.pop(key, None)
            problems.append(Problem(str(path), f"{exc} (an audio example, --query-audio)"))
    usable = [job for job in jobs if str(job.input.resolve()) in recordings
              and (job.query.audio is None or str(job.query.audio.resolve()) in examples)]
    if not usable:
        raise NothingToSeparate(problems) if problems else ConfigError("nothing to separate: no recording given")
    return SeparationPlan(usable, recordings, problems, examples)


def separate_recordings(separator: Separator, plan: SeparationPlan, out: str | Path, *, mono: bool = False,
                        residual: bool = False, audio_format: str = "wav", pcm16: bool = False,
                        overwrite: bool = False, progress: bool = True) -> SeparateResult:
    """Separate each job of `plan` for its query into `out` (see the module for the layout), in one pass
    over each recording for all of its queries, in bounded memory (`Separator.separate_recording`).

    An output the system returns NaN or infinite samples for, or whose recording changed meanwhile, is
    left out and listed in `problems` with the plan's. Outputs are written atomically and resumed by
    `infer`'s rules (`overwrite`: recompute all)."""
    refuse_reference_system(separator.system, separator.needs_reference)
    if plan.examples and not separator.queries.needs_queries:
        raise Dcase9Error(f"system '{separator.system}' takes no query, so no audio example either (--query-audio "
                          "needs a CLAP-queried system: `dcase9 systems`)")
    container, subtype, suffix = output_format(audio_format, pcm16=pcm16)
    out = Path(out)
    require_folder(out, "the separated outputs")
    check_no_overlap({"--out": out}, {f"the recording {r.path}": r.path for r in plan.recordings.values()})
    problems = list(plan.problems)
    recordings = plan.recordings
    rate = separator.model.sample_rate
    usable = plan.jobs

    def outputs_of(output_id: str) -> list[Path]:
        estimate = out / f"{output_id}{suffix}"
        return [estimate, estimate.with_name(f"{estimate.name[:-len(suffix)]}{RESIDUAL_SUFFIX}{suffix}")][
            : 2 if residual else 1]

    identity = {**separator.identity, "command": "separate", "resampler": "soxr", "format": container,
                "subtype": subtype, "mono": mono, "residual": residual}
    folder = OutputFolder(out, "separate", RecordingSources(usable), identity, overwrite=overwrite,
                          outputs_of=outputs_of)
    results: list[SeparatedOutput] = []
    audio_seconds = 0.0
    started = time.perf_counter()
    with folder:
        todo = folder.plan(usable)
        planned = {job.id for job in todo}
        for job in usable:
            if job.id not in planned:
                paths = outputs_of(job.id)
                results.append(SeparatedOutput(job.input, job.query.describe(), paths[0],
                                               paths[1] if residual else None, kept=True))
        manifest: dict[str, Any] = {
            "status": "running", "planned": len(usable),
            "settings": {"device": str(separator.device), "batch_size": separator.batch_size,
                         "segment_samples": separator.segment, "overlap": separator.options.overlap,
                         "precision": separator.options.precision, "model_sample_rate": rate, **separator.settings},
            "versions": environment_versions(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        folder.write_manifest(manifest)
        embedded: dict[str, torch.Tensor] = {}

        def conditions(query: Query) -> str | torch.Tensor:
            """A text query as it is (the separator caches its embedding); one with an example, embedded once."""
            if query.audio is None:
                return query.text or ""
            if query.key() not in embedded:
                example = plan.examples[str(query.audio.resolve())]
                embedded[query.key()] = separator.embed_query(query.text, audio=read_recording(example, mono=True),
                                                              sample_rate=example.sample_rate)
            return embedded[query.key()]

        by_input: dict[str, list[Job]] = {}
        for job in todo:
            by_input.setdefault(str(job.input.resolve()), []).append(job)
        bar = progress_bar("audio s") if progress and by_input else None
        status = "interrupted"
        try:
            with bar if bar is not None else nullcontext():
                task = bar.add_task("separating", total=round(sum(recordings[k].seconds for k in by_input), 1)) \
                    if bar is not None else None
                for key, input_jobs in by_input.items():
                    recording = recordings[key]

                    def advance(frames: int, recording: Recording = recording) -> None:
                        if bar is not None and task is not None:
                            bar.update(task, advance=frames / recording.sample_rate)

                    wanted = [conditions(job.query) for job in input_jobs]
                    done, failed = _separate_one(separator, recording, input_jobs, wanted, folder, outputs_of,
                                                 mono=mono, residual=residual, container=container, subtype=subtype,
                                                 advance=advance)
                    problems += failed
                    audio_seconds += recording.seconds if done else 0.0
                    for job in done:
                        paths = outputs_of(job.id)
                        results.append(SeparatedOutput(job.input, job.query.describe(), paths[0],
                                                       paths[1] if residual else None, kept=False))
            status = "incomplete" if problems else "complete"
        finally:
            elapsed = time.perf_counter() - started
            index = out / INDEX_NAME
            write_text_atomic(index, _index_text(folder, outputs_of))
            manifest.update({"status": status, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "written": sum(not r.kept for r in results), "kept": sum(r.kept for r in results),
                             "seconds": round(elapsed, 3), "audio_seconds": round(audio_seconds, 3),
                             "problems": [asdict(p) for p in problems]})
            folder.write_manifest(manifest)
    return SeparateResult(out, results, problems, elapsed, audio_seconds, str(separator.device), folder.manifest_path,
                          index)


def _separate_one(separator: Separator, recording: Recording, jobs: list[Job], wanted: list[str | torch.Tensor],
                  folder: OutputFolder,
                  outputs_of: Callable[[str], list[Path]], *, mono: bool, residual: bool, container: str,
                  subtype: str, advance: Callable[[int], None]) -> tuple[list[Job], list[Problem]]:
    """One recording for all its jobs' queries, each output streamed into its files; returns the jobs
    written and the problems (a query whose estimate is not finite, a file that changed meanwhile)."""
    channels = 1 if mono else recording.channels
    problems: list[Problem] = []
    failed: set[int] = set()
    writers: list[list[AudioWriter]] = []
    try:
        for job in jobs:
            files = []
            for path in outputs_of(job.id):
                files.append(AudioWriter(path, recording.sample_rate, channels, container, subtype,
                                         before_replace=lambda written, job=job, path=path: folder.record_file(
                                             job.id, path, written, recording.frames, rate=recording.sample_rate,
                                             channels=channels)))
            writers.append(files)
        stream = separator.separate_recording(recording, wanted, mono=mono)
        try:
            for mixture, estimates in stream:
                for k, (job, estimate) in enumerate(zip(jobs, estimates, strict=True)):
                    if k in failed:
                        continue
                    bad = non_finite_count(estimate)
                    if bad:
                        failed.add(k)
                        for writer in writers[k]:
                            writer.abort()
                        problems.append(Problem(job.id, f"{recording.path}: the system returned {bad} NaN or infinite "
                                                        f"samples for query {job.query.describe()}; nothing written"))
                        continue
                    writers[k][0].write(estimate)
                    if residual:
                        writers[k][1].write(mixture - estimate)
                advance(mixture.shape[-1])
        except DataError as exc:
            return [], [Problem(str(recording.path), str(exc))]
        for k, files in enumerate(writers):
            if k not in failed:
                for writer in files:
                    writer.commit()
    finally:
        for files in writers:
            for writer in files:
                writer.abort()  # what was not committed (an error, an interrupt): nothing renamed into place
    return [job for k, job in enumerate(jobs) if k not in failed], problems


def _index_text(folder: OutputFolder, outputs_of: Callable[[str], list[Path]]) -> str:
    """`separated.csv`: every output of the folder its ledger lists in full (this run's and earlier ones')."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["input", "query", "query_audio", "estimate", "residual"])
    for output_id, record in sorted(folder.records.items()):
        paths = outputs_of(output_id)
        names = [path.relative_to(folder.root).as_posix() for path in paths]
        if record.get("run") != folder.run_key or not all(name in record["files"] for name in names):
            continue
        source = record.get("source") or {}
        example = source.get("query_audio") or {}
        writer.writerow([source.get("input", ""), source.get("query") or "", example.get("path", ""), names[0],
                         names[1] if len(names) > 1 else ""])
    return buffer.getvalue()
