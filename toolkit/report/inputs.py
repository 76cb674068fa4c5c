"""Reading `dcase9 score` reports for a listening page, and checking they describe the same clips.

A score report folder holds `summary.json` (data set, estimates folder, the system's run identity
from `dcase9-run.json`, means) and `per_clip.csv` (one row per scored mixture). Reports written
since the listening page exist also carry absolute `paths` (data set root, CSV, estimates) in
summary.json; for older ones the recorded paths are used as written (relative paths are taken
from the current folder).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcase9.data.formats import DataSet, MixtureSpec, SetKind, open_dataset
from dcase9.errors import DataError, Dcase9Error
from dcase9.metrics import describe_metric, shown_metrics
from dcase9.outputs import run_manifest

SUMMARY = "summary.json"
PER_CLIP = "per_clip.csv"


@dataclass
class ScoredSystem:
    """One score report: its system's name, where its estimates are, and its values per clip."""

    name: str
    report_dir: Path
    estimates_dir: Path
    summary: dict[str, Any]
    metrics: tuple[str, ...]  # those the page shows (`dcase9.metrics.shown_metrics`), in the registry's order
    values: dict[str, dict[str, float | None]]  # clip id -> metric -> value (None when not finite)
    captions: dict[str, str]  # clip id -> caption as scored
    order: list[str] = field(default_factory=list)  # clip ids in the CSV's order
    problems: list[str] = field(default_factory=list)  # values left out as implausible (file, row, field)


def _number(text: str, path: Path, row: int, column: str, problems: list[str]) -> float | None:
    """The value of a cell; None (a gap on the page, left out of the comparison) for an empty or non-finite
    one, and for one outside the metric's plausible range, which is also listed in `problems`."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{text!r} is not a number", file=path, row=row, field=column) from None
    if not math.isfinite(value):
        return None
    low, high = describe_metric(column).plausible
    if not low <= value <= high:
        problems.append(f"{path}, row {row}, field '{column}': {text} is outside {low:g}..{high:g}, not a score "
                        "(a damaged or edited report); left out")
        return None
    return value


def read_score_report(report_dir: str | Path) -> ScoredSystem:
    """Read one report folder; the system is named from its run manifest, else the folder's name."""
    report_dir = Path(report_dir)
    summary_path, csv_path = report_dir / SUMMARY, report_dir / PER_CLIP
    if not report_dir.is_dir():
        raise DataError("score report folder not found (write one with `dcase9 score --out REPORT`)", file=report_dir)
    for required in (summary_path, csv_path):
        if not required.is_file():
            raise DataError(f"{required.name} not found: not a `dcase9 score` report folder", file=report_dir)
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read ({exc})", file=summary_path) from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", file=summary_path, row=exc.lineno) from exc
    if not isinstance(summary, dict) or not isinstance(summary.get("dataset"), dict) \
            or not isinstance(summary.get("metrics"), list) or "estimates" not in summary:
        raise DataError("not a `dcase9 score` summary (needs 'dataset', 'estimates' and 'metrics')", file=summary_path)
    kind = summary["dataset"].get("kind")
    if kind not in {k.value for k in SetKind}:
        raise DataError(f"unknown data set kind {kind!r}", file=summary_path, field="dataset.kind")
    metrics = tuple(shown_metrics(summary["metrics"]))
    values: dict[str, dict[str, float | None]] = {}
    captions: dict[str, str] = {}
    order: list[str] = []
    problems: list[str] = []
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in ("id", "caption", *metrics) if c not in header]
            if missing:
                raise DataError(f"no column(s) {', '.join(missing)} (header is {header})", file=csv_path, row=1)
            for record in reader:
                line = reader.line_num
                clip = record["id"]
                if not clip:
                    raise DataError("empty id", file=csv_path, row=line, field="id")
                if clip in values:
                    raise DataError(f"id {clip!r} appears twice", file=csv_path, row=line, field="id")
                values[clip] = {m: _number(record[m] or "", csv_path, line, m, problems) for m in metrics}
                captions[clip] = record["caption"] or ""
                order.append(clip)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read ({exc})", file=csv_path) from exc
    if not values:
        raise DataError("the report scored no clips", file=csv_path)
    paths = summary.get("paths") if isinstance(summary.get("paths"), dict) else {}
    estimates = Path(paths.get("estimates") or summary["estimates"])
    identity = summary.get("system")
    name = identity.get("system") if isinstance(identity, dict) else None
    if not isinstance(name, str) or not name.strip():
        name = report_dir.resolve().name
    else:  # a system run from a checkpoint of one's own is named by it, not as the official system
        checkpoint = ((run_manifest(estimates) or {}).get("settings") or {}).get("checkpoint")
        if isinstance(checkpoint, str) and checkpoint:
            name = f"{Path(checkpoint).parent.name}/{Path(checkpoint).name} ({name})"
    return ScoredSystem(name.strip(), report_dir, estimates, summary, metrics, values, captions, order, problems)


def unique_names(names: list[str], folders: list[Path]) -> list[str]:
    """Duplicate names get their report folder's name in brackets, then -2, -3... if still equal."""
    counts = {n: names.count(n) for n in names}
    named = [f"{n} ({f.resolve().name})" if counts[n] > 1 else n for n, f in zip(names, folders, strict=True)]
    seen: dict[str, int] = {}
    result = []
    for n in named:
        seen[n] = seen.get(n, 0) + 1
        result.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return result


def _examples(ids: set[str], limit: int = 3) -> str:
    shown = sorted(ids)[:limit]
    return ", ".join(shown) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def check_same_clips(systems: list[ScoredSystem]) -> None:
    """Refuse reports of different kinds of data set, different clips, or different captions."""
    first = systems[0]
    kind = first.summary["dataset"]["kind"]
    for other in systems[1:]:
        other_kind = other.summary["dataset"]["kind"]
        if other_kind != kind:
            raise Dcase9Error(f"{other.report_dir} scores the {other_kind} set and {first.report_dir} the {kind} set: "
                              "a listening page compares systems on one data set")
        if set(other.values) != set(first.values):
            only_first = set(first.values) - set(other.values)
            only_other = set(other.values) - set(first.values)
            parts = []
            if only_first:
                parts.append(f"{len(only_first)} only in {first.report_dir} ({_examples(only_first)})")
            if only_other:
                parts.append(f"{len(only_other)} only in {other.report_dir} ({_examples(only_other)})")
            raise Dcase9Error(f"{first.report_dir} and {other.report_dir} score different clips ({len(first.values)} "
                              f"and {len(other.values)}; {'; '.join(parts)}): a listening page compares systems on "
                              "the same clips, so score every system on the whole data set")
        for clip in first.order:
            if other.captions[clip] != first.captions[clip]:
                raise Dcase9Error(f"clip {clip} has caption {first.captions[clip]!r} in {first.report_dir} and "
                                  f"{other.captions[clip]!r} in {other.report_dir}: the reports score different "
                                  "data sets")


def open_report_dataset(first: ScoredSystem, data: str | Path | None = None) -> DataSet:
    """The data set the reports were scored on: `data` when given, else the paths recorded in the first."""
    dataset_info = first.summary["dataset"]
    kind = dataset_info["kind"]
    query = dataset_info.get("query") if SetKind(kind).is_benchmark else None  # AudioCaps: caption or labels
    if data is not None:
        return open_dataset(data, kind, query_column=query)
    paths = first.summary.get("paths") if isinstance(first.summary.get("paths"), dict) else {}
    root = Path(paths.get("data") or dataset_info.get("root") or "")
    csv_path = Path(paths.get("csv") or dataset_info.get("csv") or "")
    if not root.is_dir() or not csv_path.is_file():
        raise Dcase9Error(f"{first.report_dir / SUMMARY} records the data set at {root} ({csv_path}), which is not "
                          "there any more: pass its folder with --data")
    return open_dataset(root, kind, csv_path, query_column=query)


def match_dataset(dataset: DataSet, first: ScoredSystem) -> list[MixtureSpec]:
    """The data set's mixtures for the reports' clips, in the data set's order; refuses a mismatch."""
    by_id = {spec.id: spec for spec in dataset.mixtures}
    unknown = set(first.values) - set(by_id)
    if unknown:
        raise Dcase9Error(f"{len(unknown)} clip(s) of {first.report_dir} are not mixtures of {dataset.describe()} "
                          f"({_examples(unknown)}): the reports were scored on another data set")
    for clip in first.order:
        if by_id[clip].query != first.captions[clip]:
            raise Dcase9Error(f"clip {clip}: {first.report_dir} scored it with caption {first.captions[clip]!r}, "
                              f"{dataset.csv_path} has {by_id[clip].query!r}: the reports were scored on another "
                              "version of the data set")
    return [spec for spec in dataset.mixtures if spec.id in first.values]
