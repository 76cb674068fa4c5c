"""`dcase9 report`: a listening page and a paired comparison from `dcase9 score` reports."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dcase9.data.formats import SetKind
from dcase9.errors import ConfigError, Dcase9Error
from dcase9.files import check_no_overlap, staged_folder
from dcase9.report.compare import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bin_label, compare_systems, write_comparison
from dcase9.report.inputs import ScoredSystem, check_same_clips, match_dataset, open_report_dataset, \
    read_score_report, unique_names
from dcase9.report.media import AUDIO_DIR, SPECTROGRAM_DIR, SpectrogramRun, estimate_audio, evaluation_audio, folder_url, \
    make_spectrograms, mixed_audio, write_validation_audio
from dcase9.report.page import ASSETS_DIR, PAGE, write_page
from dcase9.metrics import describe_metric, shown_metrics
from dcase9.outputs import estimate_path
from dcase9.scoring import SNR_BINS

# What a page folder holds (toolkit/report/__init__.py); a folder with anything else is not replaced.
PAGE_ENTRIES = (PAGE, ASSETS_DIR, AUDIO_DIR, SPECTROGRAM_DIR, "comparison.json", "comparison.png")
DEFAULT_SPECTROGRAMS = 50  # one page of rows
DEFAULT_SPECTROGRAM_SECONDS = 120.0
PAGE_SIZE = 50


@dataclass
class ReportResult:
    """What `build_report` wrote: the page, the comparison and how much audio and images it made."""

    out_dir: Path
    page: Path
    systems: list[str]
    clips: int
    kind: str
    comparison: dict[str, Any]
    paths: dict[str, Path]  # page, comparison json, comparison plot (when there is a pair)
    spectrograms: SpectrogramRun
    audio_written: int = 0
    audio_kept: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # report values left out (the command exits 1)


def page_order(values: Sequence[float | None]) -> list[int]:
    """Row indices as the page sorts them first: ascending (worst first), missing values last,
    equal values in data-set order (the page's sort is stable in the same way)."""
    return sorted(range(len(values)), key=lambda i: (values[i] is None, values[i] or 0.0, i))


def page_metrics(systems: list[ScoredSystem]) -> list[str]:
    """The metrics any report holds that the page shows, in the registry's order."""
    return shown_metrics(list(dict.fromkeys(m for s in systems for m in s.metrics)))


def _comparison_metric(systems: list[ScoredSystem], metric: str | None) -> str | None:
    shared = [m for m in page_metrics(systems) if all(m in s.metrics for s in systems)]
    if metric is not None:
        if metric not in shared:
            raise ConfigError(f"--metric {metric}: not scored in every report (shared: {', '.join(shared) or 'none'})")
        return metric
    for preferred in ("sdri", "ats"):
        if preferred in shared:
            return preferred
    return None


def build_report(reports: Sequence[str | Path], out: str | Path, *, names: Sequence[str] | None = None,
                 data: str | Path | None = None, spectrograms: int = DEFAULT_SPECTROGRAMS,
                 spectrogram_seconds: float = DEFAULT_SPECTROGRAM_SECONDS, metric: str | None = None,
                 tie_margin: float | None = None, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 confidence: float = DEFAULT_CONFIDENCE, self_contained: bool = False,
                 mixed: str | Path | None = None, page_size: int = PAGE_SIZE, workers: int = 2) -> ReportResult:
    """Build `out/index.html` (and its audio, spectrograms and comparison) from score report folders
    of the same data set and clips. See toolkit/report/__init__.py for the layout.

    `mixed`: a `dcase9 mix` folder of the validation set, whose mixtures and references the page
    plays in place instead of writing its own copies.
    """
    started = time.perf_counter()
    if not reports:
        raise ConfigError("name at least one `dcase9 score` report folder")
    if spectrograms < 0 or spectrogram_seconds < 0:
        raise ConfigError("--spectrograms and --spectrogram-seconds must not be negative")
    if page_size < 1:
        raise ConfigError("the page size must be at least 1")
    systems = [read_score_report(r) for r in reports]
    if names:
        if len(names) != len(systems):
            raise ConfigError(f"{len(names)} --name value(s) for {len(systems)} report(s): give one per report, in order")
        for system, name in zip(systems, names, strict=True):
            if not name.strip():
                raise ConfigError("--name values must not be empty")
            system.name = name.strip()
    for system, name in zip(systems, unique_names([s.name for s in systems], [s.report_dir for s in systems]), strict=True):
        system.name = name
    check_same_clips(systems)
    dataset = open_report_dataset(systems[0], data)
    specs = match_dataset(dataset, systems[0])
    ids = [s.id for s in specs]
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise Dcase9Error(f"{out_dir} is a file; --out names the page's folder")
    validation = dataset.kind is SetKind.VALIDATION
    if mixed is not None and self_contained:
        raise ConfigError("--self-contained writes the page's own mixtures and references: leave out --mixed")
    if mixed is not None and not validation:
        raise ConfigError(f"--mixed: the {dataset.kind.value} set ships its mixtures; `dcase9 mix` folders are for "
                          "validation sets")
    check_no_overlap({"--out": out_dir}, {
        **dataset.input_paths(), "--mixed": mixed,
        **{f"the report {s.report_dir}": s.report_dir for s in systems},
        **{f"the estimates of {s.report_dir}": s.estimates_dir for s in systems}})
    # The page is replaced as a unit; its audio (slow to write) is linked into the new folder and reused.
    with staged_folder(out_dir, ours=PAGE_ENTRIES, purpose="a dcase9 listening page", carry=(AUDIO_DIR,)) as work:

        if mixed is not None:
            clip_audio = mixed_audio(Path(mixed), specs)
        elif validation:
            clip_audio = write_validation_audio(dataset, specs, work, workers=workers)
        else:
            clip_audio = evaluation_audio(dataset, specs, work, self_contained=self_contained)
        estimates = estimate_audio([s.estimates_dir for s in systems], [s.report_dir for s in systems], ids, work,
                                   self_contained=self_contained)

        metrics = page_metrics(systems)
        first_metric = next((m for m in ("sdri", "ats") if m in systems[0].metrics), None)
        order = page_order([systems[0].values[i].get(first_metric) for i in ids]) if first_metric \
            else list(range(len(ids)))
        players = {"mixture": clip_audio.mixture_dir}
        if clip_audio.reference_dir is not None:
            players["reference"] = clip_audio.reference_dir
        players.update({f"system-{k + 1}": folder for k, folder in enumerate(estimates.folders)})
        first_rows = [ids[i] for i in order[:spectrograms]]
        named = {"mixture": clip_audio.mixture_files, "reference": clip_audio.reference_files or {}}
        files = {clip: {player: folder / named[player][clip] if clip in named.get(player, {})
                        else estimate_path(folder, clip) for player, folder in players.items()} for clip in first_rows}
        images = make_spectrograms(first_rows, files, work, limit=spectrograms, seconds=spectrogram_seconds,
                                   sample_rate=dataset.sample_rate)

        compare_metric = _comparison_metric(systems, metric)
        if compare_metric is None:  # reports with no metric in common: nothing to compare
            comparison = {"settings": {"metric": None}, "systems": [s.name for s in systems], "clips": len(ids), "pairs": []}
        else:
            comparison = compare_systems([s.name for s in systems], [[s.values[i][compare_metric] for i in ids]
                                                                     for s in systems],
                                         metric=compare_metric, snr=[s.snr for s in specs] if validation else None,
                                         tie_margin=tie_margin, resamples=resamples, seed=seed, confidence=confidence)
        paths = write_comparison(comparison, work)

        with_images = set(images.made)
        rows = []
        for position, spec in enumerate(specs):
            row: dict[str, Any] = {"i": position, "id": spec.id, "caption": spec.query, "snr": spec.snr,
                                   "f": quote(spec.id, safe=""),
                                   "m": [[s.values[spec.id].get(m) for m in metrics] for s in systems]}
            if not validation:  # a benchmark's files may lie in sub-folders: their '/' stay separators
                row["mix"] = quote(clip_audio.mixture_files[spec.id], safe="/")
            if clip_audio.reference_files is not None:
                row["ref"] = quote(clip_audio.reference_files[spec.id], safe="/")
            if spec.id in with_images:
                row["spec"] = 1
            rows.append(row)
        title = f"dcase9 report: {', '.join(s.name for s in systems)} on the {dataset.kind.value} set"
        page_data = {
            "title": title,
            "dataset": {"kind": dataset.kind.value, "root": str(dataset.root.resolve()),
                        "csv": str(dataset.csv_path.resolve()), "mixtures": len(dataset.mixtures), "clips": len(ids)},
            "has_reference": dataset.has_references,
            "metrics": metrics,
            "labels": {m: describe_metric(m).label for m in metrics},
            "decimals": {m: describe_metric(m).page_decimals for m in metrics},
            "units": {m: describe_metric(m).unit for m in metrics},
            "higher": {m: describe_metric(m).higher_is_better for m in metrics},
            "systems": [{"name": s.name, "report": str(s.report_dir.resolve()), "estimates": str(s.estimates_dir.resolve()),
                         "base": folder_url(folder, work), "metrics": list(s.metrics),
                         "mean": {m: s.summary.get("mean", {}).get(m) for m in s.metrics},
                         "median": {m: s.summary.get("median", {}).get(m) for m in s.metrics},
                         "complete": s.summary.get("complete")}
                        for s, folder in zip(systems, estimates.folders, strict=True)],
            "audio": {"mixture": folder_url(clip_audio.mixture_dir, work),
                      "reference": folder_url(clip_audio.reference_dir, work) if clip_audio.reference_dir else None},
            "spectrograms": {"base": f"{SPECTROGRAM_DIR}/", "made": len(images.made), "limit": spectrograms,
                             "stopped_by_time": images.stopped_by_time},
            "bins": [{"label": bin_label(low, high), "low": low, "high": high} for low, high in SNR_BINS]
            if validation else [],
            "initial": {"sort": f"m.0.{first_metric}" if first_metric else "order", "dir": "asc"},
            "page_size": page_size,
            "comparison": comparison,
            "comparison_plot": "comparison.png" if "plot" in paths else None,
            "rows": rows,
        }
        page = write_page(work, title, page_data)
        final = {key: out_dir / path.relative_to(work) for key, path in {"page": page, **paths}.items()}
        result = ReportResult(out_dir, final["page"], [s.name for s in systems], len(ids), dataset.kind.value,
                              comparison, final, images, clip_audio.written + estimates.written,
                              clip_audio.kept + estimates.kept)
        result.problems = [problem for s in systems for problem in s.problems]
        if images.stopped_by_time:
            result.notes.append(f"spectrograms stopped after {spectrogram_seconds:g} s at {len(images.made)} of "
                                f"{min(spectrograms, len(ids))} rows (--spectrogram-seconds)")
        if not self_contained and any(not s.resolve().is_relative_to(work.resolve()) for s in players.values()):
            result.notes.append("the page plays audio outside its folder by relative paths: open it in place, or "
                                "build it with --self-contained to move or share the folder")
    result.seconds = time.perf_counter() - started
    return result
