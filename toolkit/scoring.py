"""`dcase9 score`: pair estimates with references by mixture id and compute the official metrics.

Outputs (in the report folder):
- `per_clip.csv`: id, source, noise, snr, caption, then one column per metric (sdr, sdri, sisdr,
  input_sdr, and what else the registry of `dcase9.metrics` holds), one row per mixture;
- `summary.json`: means as the challenge computes them (plain mean over all clips), medians, and
  a breakdown by input-SNR bins, plus every estimate problem found, the system's run identity and
  the absolute paths of the data set and the estimates (which `dcase9 report` reads);
- `sdri_vs_snr.png`: SDRi against input SNR (validation sets).
Reference-based metrics come from the registry of `dcase9.metrics` (`register_metric`); metrics that
need a model (ATS) are given as `extra_metrics` scorers.

AudioSep's benchmarks (`dcase9.data.benchmarks`) are scored as its evaluators score them: at 32 kHz, SDR,
SDRi, SI-SDR and SI-SDRi per clip (`per_clip.csv`: id, file, reference, caption, class), and in
summary.json a `benchmark` section with the number AudioSep's benchmark.py prints for SDRi and SI-SDR
(its aggregate: AudioSet the mean of per-class medians, MUSIC the mean of per-instrument means, the
others the mean over clips), per class values where there are classes, and the published numbers'
place (`dcase9 suite` fills them in).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from dcase9.audio import read_failure, resampled_length
from dcase9.data.benchmarks import benchmark_aggregate, class_values
from dcase9.data.formats import DataSet, MixtureSpec, open_dataset
from dcase9.data.items import ItemLoader, LoadFailure, ordered_map
from dcase9.devices import resolve_device
from dcase9.engine import resolve_workers
from dcase9.errors import ConfigError, Dcase9Error
from dcase9.files import atomic_output, check_no_overlap, finite_or_none, require_folder, staged_folder, write_text_atomic
from dcase9.metrics import compute_reference_metrics, describe_metric, registered_metrics
from dcase9.outputs import estimate_files, run_identity, unvouched_estimates

SNR_BINS = ((-15, -10), (-10, -5), (-5, 0), (0, 5), (5, 10), (10, 15))  # last bin includes 15

# An extra metric gets (specs, estimates as float32 arrays, device) and returns one value per clip.
ExtraMetric = Callable[[Sequence[MixtureSpec], Sequence[np.ndarray], torch.device], Sequence[float]]


@dataclass
class EstimateProblem:
    id: str
    # missing | extra | unreadable | wrong-rate | wrong-channels | wrong-length | non-finite (the estimate)
    # | unusable-input (its mixture or reference) | non-finite-score
    kind: str
    message: str


@dataclass
class ScoreReport:
    dataset: DataSet
    estimates_dir: Path
    rows: list[dict[str, Any]]
    problems: list[EstimateProblem]
    metrics: tuple[str, ...]
    summary: dict[str, Any] = field(default_factory=dict)
    metric_settings: dict[str, Any] = field(default_factory=dict)  # e.g. how ATS was computed

    @property
    def complete(self) -> bool:
        return not self.problems and len(self.rows) == len(self.dataset.mixtures)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if len(values) else None


def snr_bin(snr: int | float) -> tuple[int, int] | None:
    for low, high in SNR_BINS:
        if low <= snr < high or (high == SNR_BINS[-1][1] and snr == high):
            return low, high
    return None


def summarise(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "n": len(rows),
        "mean": {m: _mean([r[m] for r in rows]) for m in metrics},
        "median": {m: _median([r[m] for r in rows]) for m in metrics},
    }
    if rows and all(r.get("snr") is not None for r in rows):
        bins = []
        for low, high in SNR_BINS:
            inside = [r for r in rows if snr_bin(r["snr"]) == (low, high)]
            closing = "]" if high == SNR_BINS[-1][1] else ")"
            bins.append({"bin": f"[{low}, {high}{closing}", "low": low, "high": high, "n": len(inside),
                         "mean": {m: _mean([r[m] for r in inside]) for m in metrics}})
        summary["by_input_snr"] = bins
    return summary


def check_estimates(dataset: DataSet, estimates_dir: Path, specs: Sequence[MixtureSpec],
                    lengths: dict[str, int] | None = None) -> tuple[dict[str, Path], list[EstimateProblem]]:
    """Find `<id>.wav` for each mixture; report missing, extra and malformed files."""
    if not estimates_dir.is_dir():
        raise Dcase9Error(f"estimates folder not found: {estimates_dir}")
    found = estimate_files(estimates_dir)
    expected_ids = {s.id for s in specs}
    problems = [EstimateProblem(s.id, "missing", f"no estimate {s.id}.wav") for s in specs if s.id not in found]
    # A dcase9 folder vouches for its estimates; one that mixes runs must not be scored as one system.
    for output_id, reason in (unvouched_estimates(estimates_dir, found) or {}).items():
        problems.append(EstimateProblem(output_id, "unvouched", f"{reason}; left out"))
        del found[output_id]
    extras = sorted(set(found) - {m.id for m in dataset.mixtures})
    problems += [EstimateProblem(i, "extra", f"{found[i].name} matches no mixture of the data set") for i in extras]
    usable: dict[str, Path] = {}
    for spec in specs:
        path = found.get(spec.id)
        if path is None or spec.id not in expected_ids:
            continue
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            problems.append(EstimateProblem(spec.id, "unreadable", f"{path.name}: unreadable ({exc})"))
            continue
        bad = []
        if info.samplerate != dataset.sample_rate:
            bad.append(("wrong-rate", f"{path.name}: {info.samplerate} Hz, expected {dataset.sample_rate}"))
        if info.channels != 1:
            bad.append(("wrong-channels", f"{path.name}: {info.channels} channels, expected mono"))
        if lengths is not None and spec.id in lengths and info.frames != lengths[spec.id]:
            bad.append(("wrong-length", f"{path.name}: {info.frames} samples, the mixture has {lengths[spec.id]}"))
        problems += [EstimateProblem(spec.id, kind, msg) for kind, msg in bad]
        if not bad:
            usable[spec.id] = path
    return usable, problems


def metric_columns(has_references: bool, extra_metrics: Mapping[str, Any], benchmarks: bool = False) -> tuple[str, ...]:
    """The metrics a report holds, in the registry's order: the reference-based ones (when there are
    references; on AudioSep's benchmarks also those registered for them) and the scorers given; scorers
    under unregistered names come last."""
    registered = [m.name for m in registered_metrics()
                  if (m.compute is not None and has_references and (benchmarks or not m.benchmarks_only))
                  or m.name in extra_metrics]
    return tuple(registered + [name for name in extra_metrics if name not in registered])


def score_estimates(data: str | Path | DataSet, estimates_dir: str | Path, out_dir: str | Path | None = None, *,
                    device: str = "auto", batch_size: int = 32, workers: int | None = None, progress: bool = True,
                    extra_metrics: dict[str, ExtraMetric] | None = None) -> ScoreReport:
    """Score a folder of estimates against a validation set (the only kind with references).

    `workers`: reading threads (None: the device's default, as `infer`: `resolve_workers`)."""
    dataset = open_dataset(data)
    estimates_dir = Path(estimates_dir)
    # A scorer that reads audio at a given rate (ATS) hears the estimates at this set's rate.
    extra_metrics = {name: metric.at_rate(dataset.sample_rate) if hasattr(metric, "at_rate") else metric
                     for name, metric in (extra_metrics or {}).items()}
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if out_dir is not None:
        require_folder(out_dir, "the report")
        check_no_overlap({"--out": out_dir}, {**dataset.input_paths(), "--estimates": estimates_dir})
    if not dataset.has_references and not extra_metrics:
        raise Dcase9Error(f"the {dataset.kind.value} set has no references, so SDR, SDRi and SI-SDR cannot be "
                          "computed; only a reference-free metric can score it: add --ats (Python: ats=)")
    torch_device = resolve_device(device)
    workers = resolve_workers(workers, torch_device)
    loader = ItemLoader(dataset)
    specs = dataset.mixtures

    # Lengths of the mixtures decide 'wrong-length'; for validation sets they are the clip lengths.
    # An unreadable one is that clip's problem (exit 1), not the whole report's: the others are scored.
    def mixture_length(spec: MixtureSpec) -> int | EstimateProblem:
        path = dataset.files_of(spec)[0]
        try:
            info = sf.info(str(path))
            # As read: a benchmark file at another rate is resampled to the set's rate (librosa.load's way).
            return resampled_length(info.frames, info.samplerate, dataset.sample_rate)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            return EstimateProblem(spec.id, "unusable-input",
                                   f"{spec.id}: cannot be scored: {path}: {read_failure(path, exc)}")

    lengths: dict[str, int] = {}
    unusable: list[EstimateProblem] = []
    for spec, length in zip(specs, ordered_map(mixture_length, specs, workers=workers, prefetch=64), strict=True):
        if isinstance(length, EstimateProblem):
            unusable.append(length)
        else:
            lengths[spec.id] = length
    usable, problems = check_estimates(dataset, estimates_dir, [s for s in specs if s.id in lengths], lengths)
    problems = unusable + problems
    scored_specs = [s for s in specs if s.id in usable]
    benchmarks = dataset.kind.is_benchmark
    metrics = metric_columns(dataset.has_references, extra_metrics, benchmarks)

    def load(spec: MixtureSpec) -> tuple[MixtureSpec, np.ndarray, np.ndarray | None, np.ndarray] | EstimateProblem:
        item = loader.load_or_fail(spec)
        if isinstance(item, LoadFailure):  # a reference or mixture that is missing, truncated, NaN...
            return EstimateProblem(spec.id, "unusable-input", f"{spec.id}: cannot be scored: {item.error}")
        estimate, _ = sf.read(str(usable[spec.id]), dtype="float32")
        return spec, item.mixture, item.reference, estimate

    rows: list[dict[str, Any]] = []
    from dcase9.progress import progress_bar

    bar = progress_bar("clips") if progress else None
    with bar if bar is not None else nullcontext():
        task = bar.add_task("scoring", total=len(scored_specs)) if bar is not None else None
        batch: list[tuple[MixtureSpec, np.ndarray, np.ndarray | None, np.ndarray]] = []
        for loaded in ordered_map(load, scored_specs, workers=workers, prefetch=2 * batch_size):
            if isinstance(loaded, EstimateProblem):
                problems.append(loaded)
                continue
            if not np.all(np.isfinite(loaded[3])):
                problems.append(EstimateProblem(loaded[0].id, "non-finite", f"{loaded[0].id}.wav has NaN or "
                                                "infinite samples"))
                continue
            batch.append(loaded)
            if len(batch) >= batch_size:
                rows += _finite_rows(_score_batch(batch, torch_device, extra_metrics, benchmarks), problems)
                batch = []
            if bar is not None and task is not None:
                bar.update(task, advance=1)
        if batch:
            rows += _finite_rows(_score_batch(batch, torch_device, extra_metrics, benchmarks), problems)
    settings = {name: metric.settings() for name, metric in extra_metrics.items() if hasattr(metric, "settings")}
    report = ScoreReport(dataset, estimates_dir, rows, problems, metrics, metric_settings=settings)
    report.summary = _summary_document(report)
    if out_dir is not None:
        write_report(report, Path(out_dir))
    return report


def _score_batch(batch: Sequence[tuple[MixtureSpec, np.ndarray, np.ndarray | None, np.ndarray]],
                 device: torch.device, extra_metrics: dict[str, ExtraMetric],
                 benchmarks: bool = False) -> list[dict[str, Any]]:
    values: dict[str, list[float]] = {}
    # Clips of different lengths are scored in groups of equal length (a real set may mix them).
    by_length: dict[int, list[int]] = {}
    for i, (_, mixture, _, _) in enumerate(batch):
        by_length.setdefault(mixture.shape[-1], []).append(i)
    per_clip: list[dict[str, float]] = [{} for _ in batch]
    if batch[0][2] is not None:
        for indices in by_length.values():
            # Widened to float64 once here, not in every metric (the metrics compute in float64 anyway,
            # so the values are the same to the bit); moved as float32, widened on the device.
            ref, est, mix = (torch.from_numpy(np.stack([batch[i][k] for i in indices])).to(device).double()  # type: ignore[misc]
                             for k in (2, 3, 1))
            for name, computed in compute_reference_metrics(ref, est, mix, benchmarks).items():
                for i, value in zip(indices, computed.cpu().tolist(), strict=True):
                    per_clip[i][name] = value
    for name, metric in extra_metrics.items():
        values[name] = list(metric([b[0] for b in batch], [b[3] for b in batch], device))
        for i, value in enumerate(values[name]):
            per_clip[i][name] = float(value)
    rows = []
    for (spec, _, _, _), clip in zip(batch, per_clip, strict=True):
        rows.append({"id": spec.id, "source": spec.source, "noise": spec.noise, "snr": spec.snr,
                     "file": spec.file, "reference": spec.reference, "class": spec.group, "caption": spec.query,
                     **clip})
    return rows


def _finite_rows(rows: list[dict[str, Any]], problems: list[EstimateProblem]) -> list[dict[str, Any]]:
    """Rows whose every metric is a finite number; the others become problems (a silent reference
    gives SDR -inf, say) and stay out of the means."""
    kept = []
    for row in rows:
        bad = [name for name, value in row.items() if isinstance(value, float) and not math.isfinite(value)]
        implausible = [name for name, value in row.items() if name not in bad and isinstance(value, float)
                       and not describe_metric(name).plausible[0] <= value <= describe_metric(name).plausible[1]]
        if bad:
            problems.append(EstimateProblem(row["id"], "non-finite-score", f"{row['id']}: {', '.join(bad)} is not a "
                                            "finite number (a silent or degenerate reference or estimate); left out "
                                            "of the means"))
        elif implausible:
            problems.append(EstimateProblem(row["id"], "implausible-score", f"{row['id']}: {', '.join(implausible)} "
                                            "is outside the metric's plausible range (audio far beyond full scale?); "
                                            "left out of the means"))
        else:
            kept.append(row)
    return kept


def _summary_document(report: ScoreReport) -> dict[str, Any]:
    ds = report.dataset
    system = run_identity(report.estimates_dir)
    by_kind: dict[str, list[str]] = {}
    for problem in report.problems:
        by_kind.setdefault(problem.kind, []).append(problem.id)
    return {
        "dataset": {"root": str(ds.root), "kind": ds.kind.value, "csv": str(ds.csv_path),
                    "mixtures": len(ds.mixtures), **({"query": ds.query_column} if ds.kind.is_benchmark else {})},
        "estimates": str(report.estimates_dir),
        # Absolute locations, so that `dcase9 report` finds the audio from any working folder.
        "paths": {"data": str(ds.root.resolve()), "csv": str(ds.csv_path.resolve()),
                  "estimates": str(report.estimates_dir.resolve())},
        "system": system,
        "complete": report.complete,
        "scored": len(report.rows),
        "problems": by_kind,
        "metrics": list(report.metrics),
        "metric_settings": report.metric_settings,
        **summarise(report.rows, report.metrics),
        **({"benchmark": benchmark_summary(report)} if ds.kind.is_benchmark else {}),
    }


def benchmark_summary(report: ScoreReport) -> dict[str, Any]:
    """What AudioSep's benchmark.py prints for the scored clips: its aggregate of SDRi and SI-SDR (and of
    SI-SDRi, which its evaluators compute but do not print), with per-class values where it aggregates
    over classes. On a complete report these are its numbers; on an incomplete one, those of the clips
    scored (`complete` says which)."""
    ds = report.dataset
    benchmark = ds.kind.benchmark
    assert benchmark is not None
    groups = [row["class"] for row in report.rows]
    aggregate = {m: benchmark_aggregate(benchmark, [row[m] for row in report.rows], groups)
                 for m in ("sdri", "sisdr", "sisdri") if m in report.metrics}
    summary: dict[str, Any] = {
        "name": benchmark.name, "title": benchmark.title, "query": ds.query_column, "aggregate": benchmark.aggregate,
        "sample_rate": ds.sample_rate, "clips": len(report.rows), "complete": report.complete, **aggregate,
        "printed": f"{benchmark.title} Avg SDRi: {_audiosep_number(aggregate.get('sdri'))}, "
                   f"SISDR: {_audiosep_number(aggregate.get('sisdr'))}",
    }
    if benchmark.group_by is not None:
        summary["classes"] = {m: class_values(benchmark, [row[m] for row in report.rows], groups)
                              for m in ("sdri", "sisdr") if m in report.metrics}
    return summary


def _audiosep_number(value: float | None) -> str:
    """As benchmark.py formats it ("{:.3f}"; nan where there is no number)."""
    return "nan" if value is None else f"{value:.3f}"


REPORT_FILES = ("per_clip.csv", "summary.json", "sdri_vs_snr.png")


def write_report(report: ScoreReport, out_dir: Path) -> dict[str, Path]:
    """Write the report files into `out_dir`, replacing a previous report there as a unit (a reader
    sees the old one or the new one, never a mix; see `dcase9.files.staged_folder`)."""
    with staged_folder(out_dir, ours=REPORT_FILES, purpose="a dcase9 score report") as staging:
        written = _write_report_files(report, staging)
    return {key: out_dir / path.name for key, path in written.items()}


def _write_report_files(report: ScoreReport, out_dir: Path) -> dict[str, Path]:
    if report.dataset.kind.is_benchmark:
        columns = ["id", "file", "reference", "caption"] + (["class"] if report.dataset.kind.benchmark.group_by else [])  # type: ignore[union-attr]
    elif report.dataset.has_references:
        columns = ["id", "source", "noise", "snr", "caption"]
    else:
        columns = ["id", "file", "caption"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns + list(report.metrics))
    for row in report.rows:
        writer.writerow([row.get(c) for c in columns] + [repr(float(row[m])) for m in report.metrics])
    paths = {"per_clip": out_dir / "per_clip.csv", "summary": out_dir / "summary.json"}
    write_text_atomic(paths["per_clip"], buffer.getvalue())
    write_text_atomic(paths["summary"], json.dumps(finite_or_none(report.summary), indent=2, ensure_ascii=False,
                                              allow_nan=False) + "\n")
    if report.rows and "sdri" in report.metrics and all(row.get("snr") is not None for row in report.rows):
        paths["plot"] = out_dir / "sdri_vs_snr.png"
        plot_sdri_vs_snr(report.rows, paths["plot"])
    return paths


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write a figure as PNG atomically, then close it."""
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        pyplot().close(fig)


def plot_sdri_vs_snr(rows: Sequence[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    snr = np.array([r["snr"] for r in rows], dtype=float)
    values = np.array([r["sdri"] for r in rows], dtype=float)
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, size=snr.shape)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.scatter(snr + jitter, values, s=8, alpha=0.35, color="tab:blue", label="clips")
    centres, means = [], []
    for low, high in SNR_BINS:
        inside = (snr >= low) & ((snr < high) | ((snr == high) & (high == SNR_BINS[-1][1])))
        if inside.any():
            centres.append((low + high) / 2)
            means.append(float(np.mean(values[inside])))
    ax.plot(centres, means, color="tab:red", marker="o", label="mean per 5 dB input-SNR bin")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.axhline(float(np.mean(values)), color="tab:green", linestyle="--", linewidth=1,
               label=f"overall mean {np.mean(values):.3f} dB")
    ax.set_xlabel("input SNR (dB)")
    ax.set_ylabel("SDRi (dB)")
    ax.set_title("SDR improvement against input SNR")
    if ax.get_legend_handles_labels()[0]:  # matplotlib warns (on the terminal) about a legend of nothing
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
