"""`dcase9 suite`: AudioSep's six LASS benchmarks with one system, separated and scored, resumably.

For each benchmark of `EVALUATION_DIR/data/` (AudioSep's layout; `--only` picks some), in the order of
AudioSep's README table:

- `OUT/<name>/estimates/`: the system's estimates, written by the engine exactly as `dcase9 infer` writes
  them (32 kHz, whole clips, the manifest and ledger that make a re-run skip what is done);
- `OUT/<name>/report/`: a `dcase9 score` report of them (per_clip.csv, summary.json with the number
  AudioSep's benchmark.py prints), computed again on each run (scoring is cheap next to separating);
- `OUT/summary.json`, rewritten after each benchmark: per benchmark its clips, the means over clips of
  SDRi and SI-SDR, the aggregate AudioSep reports (and SI-SDRi's), and the published numbers given. The
  entries of benchmarks an earlier run of the same system on the same folder wrote (`--only` runs) are
  kept.

A benchmark whose folder is missing, whose metadata cannot be used, or whose clips are not all separated
and scored, is named in the summary and the result; the others are still run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dcase9.data.benchmarks import BENCHMARK_NAMES, BENCHMARK_SAMPLE_RATE, BENCHMARKS, DATA_DIR, METADATA_DIR, Benchmark
from dcase9.data.formats import SetKind, check_query_choice, open_dataset
from dcase9.engine import Separator
from dcase9.errors import ConfigError, DataError
from dcase9.files import check_no_overlap, require_folder, write_json_atomic
from dcase9.progress import Stage, StagePlan
from dcase9.scoring import score_estimates

SUMMARY_NAME = "summary.json"
ESTIMATES_DIR = "estimates"
REPORT_DIR = "report"


@dataclass
class BenchmarkResult:
    """One benchmark of a suite run: what was done and the numbers AudioSep's benchmark.py prints."""

    name: str
    title: str
    status: str  # scored | missing (no data folder) | unusable (its metadata) | failed (it could not run)
    message: str = ""
    clips: int = 0  # rows of its CSV
    scored: int = 0
    complete: bool = False  # every clip separated and scored
    mean_sdri: float | None = None  # over the clips scored
    mean_sisdr: float | None = None
    sdri: float | None = None  # AudioSep's aggregate (what its benchmark.py prints)
    sisdr: float | None = None
    sisdri: float | None = None
    aggregate: str = ""
    query: str | None = None  # the column its queries come from
    printed: str = ""  # the line benchmark.py prints
    problems: list[str] = field(default_factory=list)  # left out of the separation or the scores, and why
    published: dict[str, Any] | None = None  # {"sdri", "sisdr", "source"}
    estimates: str | None = None  # relative to OUT
    report: str | None = None


@dataclass
class SuiteResult:
    out: Path
    benchmarks: list[BenchmarkResult]
    summary: Path

    @property
    def complete(self) -> bool:
        return bool(self.benchmarks) and all(b.status == "scored" and b.complete for b in self.benchmarks)


def suite_benchmarks(only: Sequence[str] | None, query: str | None = None) -> list[Benchmark]:
    """The benchmarks to run, in README order; an unknown name is refused with the known ones, and a `query`
    (AudioCaps' query column) that AudioCaps does not offer or that no benchmark run would use."""
    unknown = [name for name in only or () if name not in BENCHMARK_NAMES]
    if unknown:
        raise ConfigError(f"--only {unknown[0]!r}: not one of AudioSep's benchmarks ({', '.join(BENCHMARK_NAMES)})")
    chosen = [b for b in BENCHMARKS if not only or b.name in only]
    if query is not None:
        check_query_choice(SetKind.AUDIOCAPS, query)
        if SetKind.AUDIOCAPS.value not in {b.name for b in chosen}:
            raise ConfigError("--query-column chooses AudioCaps' query column; AudioCaps is not among the benchmarks run")
    return chosen


def check_evaluation_dir(evaluation_dir: Path) -> None:
    """AudioSep's layout: `metadata/` and `data/` side by side."""
    if not evaluation_dir.is_dir():
        raise DataError("no such folder" if not evaluation_dir.exists() else "not a folder", file=evaluation_dir)
    missing = [name for name in (METADATA_DIR, DATA_DIR) if not (evaluation_dir / name).is_dir()]
    if missing:
        raise DataError(f"not AudioSep's evaluation folder: no {' or '.join(f'{m}/' for m in missing)} in it (its "
                        f"layout: {METADATA_DIR}/<name>_eval.csv and {DATA_DIR}/<name>/, as in AudioSep's "
                        "evaluation/ folder)", file=evaluation_dir)


def run_suite(separator: Separator, evaluation_dir: str | Path, out: str | Path, *, only: Sequence[str] | None = None,
              query: str | None = None, published: Mapping[str, Mapping[str, Any]] | None = None,
              device: str = "auto", batch_size: int = 32, workers: int | None = None, progress: bool = True,
              on_result: Callable[[BenchmarkResult], None] | None = None,
              on_stage: Callable[[Stage], None] | None = None) -> SuiteResult:
    """Separate and score the benchmarks of `evaluation_dir` with `separator` into `out` (see the module).

    `query`: AudioCaps' query column (caption, as AudioSep's benchmark.py, or labels); `published`: per
    benchmark name the published numbers to record next to the run's; `device`, `batch_size`, `workers`:
    `score`'s; `on_result` is called after each benchmark (the command line prints it); `on_stage` gets each
    stage as it starts, two per benchmark (`<title>: separating`, `<title>: scoring`: a
    `dcase9.progress.Stage`, k of n, the time so far, what comes next); a benchmark that cannot run skips
    its two.
    """
    evaluation_dir, out = Path(evaluation_dir), Path(out)
    chosen = suite_benchmarks(only, query)
    check_evaluation_dir(evaluation_dir)
    require_folder(out, "the suite's results")
    check_no_overlap({"--out": out}, {"EVALUATION_DIR": evaluation_dir})
    out.mkdir(parents=True, exist_ok=True)
    results: list[BenchmarkResult] = []
    summary_path = out / SUMMARY_NAME
    earlier = _earlier_entries(summary_path, separator, evaluation_dir)
    plan = StagePlan([stage for benchmark in chosen for stage in _stages(benchmark)], on_stage)
    for benchmark in chosen:
        result = _run_one(separator, benchmark, evaluation_dir, out, query=query if benchmark.name == "audiocaps"
                          else None, device=device, batch_size=batch_size, workers=workers, progress=progress,
                          plan=plan)
        if published and benchmark.name in published:
            result.published = dict(published[benchmark.name])
        results.append(result)
        _write_summary(summary_path, separator, evaluation_dir, results, earlier)
        if on_result is not None:
            on_result(result)
    return SuiteResult(out, results, summary_path)


def _stages(benchmark: Benchmark) -> tuple[str, str]:
    """A benchmark's two stages: separating, then scoring."""
    return f"{benchmark.title}: separating", f"{benchmark.title}: scoring"


def _run_one(separator: Separator, benchmark: Benchmark, evaluation_dir: Path, out: Path, *, query: str | None,
             device: str, batch_size: int, workers: int | None, progress: bool, plan: StagePlan) -> BenchmarkResult:
    result = BenchmarkResult(benchmark.name, benchmark.title, "scored", aggregate=benchmark.aggregate)
    data = evaluation_dir / DATA_DIR / benchmark.name
    if not data.is_dir():
        result.status, result.message = "missing", f"{data}: no such folder (its audio is not here)"
        return result
    try:
        dataset = open_dataset(data, SetKind(benchmark.name), query_column=query)
    except DataError as exc:
        result.status, result.message = "unusable", f"{exc} (see `dcase9 validate {data}`)"
        return result
    result.clips, result.query = len(dataset.mixtures), dataset.query_column
    estimates, report_dir = out / benchmark.name / ESTIMATES_DIR, out / benchmark.name / REPORT_DIR
    result.estimates = f"{benchmark.name}/{ESTIMATES_DIR}"
    separating, scoring = _stages(benchmark)
    plan.start(separating)
    run = separator.infer(dataset, estimates, progress=progress)
    result.problems += [f"{p.id}: {p.message}" for p in run.problems]
    plan.start(scoring)
    report = score_estimates(dataset, estimates, report_dir, device=device, batch_size=batch_size, workers=workers,
                             progress=progress)
    result.report = f"{benchmark.name}/{REPORT_DIR}"
    left_out = {p.id for p in run.problems}  # already named by the separation
    result.problems += [p.message for p in report.problems if p.id not in left_out or p.kind != "missing"]
    summary = report.summary
    numbers = summary["benchmark"]
    result.scored, result.complete = len(report.rows), report.complete
    result.mean_sdri, result.mean_sisdr = summary["mean"].get("sdri"), summary["mean"].get("sisdr")
    result.sdri, result.sisdr, result.sisdri = numbers.get("sdri"), numbers.get("sisdr"), numbers.get("sisdri")
    result.printed = numbers["printed"]
    return result


def _earlier_entries(path: Path, separator: Separator, evaluation_dir: Path) -> dict[str, Any]:
    """The benchmarks of an earlier summary in OUT written for the same system and folder; {} otherwise
    (none, unreadable, or another run's: those entries are replaced, not mixed with this run's)."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("system") != separator.identity \
            or earlier.get("evaluation_dir") != str(evaluation_dir.resolve()) \
            or not isinstance(earlier.get("benchmarks"), dict):
        return {}
    return {name: entry for name, entry in earlier["benchmarks"].items()
            if name in BENCHMARK_NAMES and isinstance(entry, dict)}


def _write_summary(path: Path, separator: Separator, evaluation_dir: Path, results: list[BenchmarkResult],
                   earlier: dict[str, Any]) -> None:
    entries = {**earlier, **{r.name: asdict(r) for r in results}}
    entries = {name: entries[name] for name in BENCHMARK_NAMES if name in entries}  # README order
    write_json_atomic(path, {
        "evaluation_dir": str(evaluation_dir.resolve()),
        "system": separator.identity,
        "sample_rate": {"data": BENCHMARK_SAMPLE_RATE, "model": separator.model.sample_rate},
        "complete": len(entries) == len(BENCHMARK_NAMES) and all(
            e.get("status") == "scored" and e.get("complete") is True for e in entries.values()),
        "benchmarks": entries,
    })
