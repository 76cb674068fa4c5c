"""Summary of a run: counts per dataset and prompt (like seed 000's Table 2), score statistics,
a histogram of BERTScore F1 with the threshold marked (like its Fig. 2), and rich tables for the CLI.

The summary holds no times or paths outside the output folder, so an interrupted and resumed run
writes the same summary as an uninterrupted one.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dcase9.augment.config import AugmentConfig
from dcase9.augment.parsing import Verdict
from dcase9.augment.plan import Plan, is_selected
if TYPE_CHECKING:
    from rich.table import Table

_DROP_VERDICTS = [v.value for v in Verdict if v is not Verdict.OK]


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"count": len(values), "mean": round(mean, 4), "std": round(std, 4), "min": min(values),
            "max": max(values)}


def build_summary(config: AugmentConfig, plan: Plan, answers: Mapping[str, dict[str, Any]],
                  failures: Mapping[str, dict[str, Any]], groups: Mapping[str, list[dict[str, Any]]],
                  added: Counter, repeated: Counter, unjudged: set[str]) -> dict[str, Any]:
    # Which clips, items and (unique) requests belong to each (dataset, prompt) group.
    members: dict[tuple[str, str], dict[str, Any]] = {}
    originals: Counter[str] = Counter()
    for item, chosen in zip(plan.items, plan.item_requests, strict=True):
        originals[item.dataset] += 1
        for label, key in chosen:
            entry = members.setdefault((item.dataset, label), {"items": 0, "clips": set(), "keys": {}})
            entry["items"] += 1
            entry["clips"].add(item.wav)
            entry["keys"][key] = None

    group_rows = []
    totals: Counter[str] = Counter()
    judged_with: set[str] = set()
    for (dataset, label), entry in members.items():
        keys = list(entry["keys"])
        threshold = plan.requests[keys[0]].threshold  # one prompt per (dataset, prompt label) group
        verdicts: Counter[str] = Counter()
        scores: list[float] = []
        counts: Counter[str] = Counter()
        prompt_ids: set[str] = set()
        for key in keys:
            prompt_ids.add(plan.requests[key].prompt_id)
            answer = answers.get(key)
            if answer is None:
                counts["failed" if key in failures else "pending"] += 1
                continue
            counts["answered"] += 1
            if answer.get("status") == "malformed":
                counts["malformed"] += 1
            if answer.get("cut"):
                counts["cut"] += 1
            if key in unjudged:
                counts["unjudged"] += 1
                continue
            for record in groups.get(key, []):
                counts["pieces"] += 1
                verdicts[record["verdict"]] += 1
                judged_with.add(record.get("judged_with", "?"))
                f1 = record.get("bertscore_f1")
                if record["verdict"] == Verdict.OK.value and f1 is not None:
                    scores.append(f1)
                    if f1 >= 1.0:
                        counts["identical_score"] += 1
                    elif threshold is not None and f1 < threshold:
                        counts["below_threshold"] += 1
                if is_selected(record, threshold):
                    counts["selected"] += 1
        clips = len(entry["clips"])
        row = {
            "dataset": dataset, "prompt": label, "prompt_ids": sorted(prompt_ids), "threshold": threshold,
            "items": entry["items"], "clips": clips, "requests": len(keys),
            "answered": counts["answered"], "malformed": counts["malformed"], "cut": counts["cut"],
            "failed": counts["failed"],
            "pending": counts["pending"], "unjudged": counts["unjudged"],
            "pieces": counts["pieces"], "candidates": sum(verdicts[v] for v in verdicts if v not in (
                Verdict.PREAMBLE.value, Verdict.COMMENTARY.value)),
            "dropped": {v: verdicts[v] for v in _DROP_VERDICTS if verdicts[v]},
            "passed_filters": verdicts[Verdict.OK.value],
            "below_threshold": counts["below_threshold"], "identical_score": counts["identical_score"],
            "selected": counts["selected"], "repeated_for_clip": repeated[(dataset, label)],
            "added": added[(dataset, label)],
            "mean_added_per_clip": round(added[(dataset, label)] / clips, 4) if clips else 0.0,
            "bertscore_f1": _stats(scores),
        }
        group_rows.append(row)
        for name in ("items", "requests", "answered", "malformed", "cut", "failed", "pending", "unjudged",
                     "candidates", "passed_filters", "below_threshold", "identical_score", "selected", "added"):
            totals[name] += row[name]

    tokens = Counter()
    for key in plan.requests:
        record = answers.get(key) or failures.get(key)
        if record:
            tokens["prompt"] += int(record.get("prompt_tokens") or 0)
            tokens["completion"] += int(record.get("completion_tokens") or 0)

    datasets = list(dict.fromkeys(item.dataset for item in plan.items))
    table = {dataset: {"original": originals[dataset],
                       **{label: added[(dataset, label)] for label in plan.prompt_labels
                          if (dataset, label) in members}}
             for dataset in datasets}
    return {
        "threshold": config.bertscore.threshold,  # None: each prompt's own (see each group's "threshold")
        "selection": "verdict 'ok', and threshold <= BERTScore F1 < 1 where the group has a threshold",
        "bertscore": {"model": config.bertscore.model, "num_layers": config.bertscore.num_layers,
                      "rescale_with_baseline": config.bertscore.rescale_with_baseline,
                      "judged_with": sorted(judged_with)},
        "backend": {"kind": config.backend.kind, "model": config.backend.resolved_model()},
        "prompts": plan.prompt_labels,
        "captions": {"columns": ["original", *plan.prompt_labels], "rows": table,
                     "total": len(plan.items) + totals["added"]},
        "groups": group_rows,
        "totals": {name: totals[name] for name in ("items", "requests", "answered", "malformed", "cut", "failed",
                                                   "pending", "unjudged", "candidates", "passed_filters",
                                                   "below_threshold", "identical_score", "selected", "added")},
        "items_without_tags": plan.items_without_tags,
        "tokens": {"prompt": tokens["prompt"], "completion": tokens["completion"]},
    }


def histogram_png(plan: Plan, groups: Mapping[str, list[dict[str, Any]]]) -> bytes:
    """Step histograms of BERTScore F1 (filtered candidates) per dataset and prompt, thresholds marked (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[str, list[float]] = {}
    seen: set[tuple[str, str, str]] = set()
    for item, chosen in zip(plan.items, plan.item_requests, strict=True):
        for label, key in chosen:
            if (item.dataset, label, key) in seen:
                continue
            seen.add((item.dataset, label, key))
            for record in groups.get(key, []):
                if record.get("verdict") == Verdict.OK.value and record.get("bertscore_f1") is not None:
                    series.setdefault(f"{item.dataset} / {label}", []).append(record["bertscore_f1"])

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    thresholds = sorted({r.threshold for r in plan.requests.values() if r.threshold is not None})
    low = min([t - 0.05 for t in thresholds] + [min(v) for v in series.values()] or [0.5])
    bins = [low + i * (1.0 - low) / 50 for i in range(51)]
    for name, values in series.items():
        axes.hist(sorted(values), bins=bins, histtype="step", linewidth=1.5, label=f"{name} (n={len(values)})")
    for threshold in thresholds:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axes.set_xlabel("BERTScore F1 against the original caption")
    axes.set_ylabel("candidates")
    axes.set_title("Candidates that passed the filters" if series else "No scored candidates yet")
    if axes.get_legend_handles_labels()[0]:  # matplotlib warns (on the terminal) about a legend of nothing
        axes.legend(fontsize="small", loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def summary_tables(summary: Mapping[str, Any]) -> list[Table]:
    """Rich tables: captions per dataset and prompt (like seed 000 Table 2), the funnel from answers to
    added captions per group, and the reasons candidates were dropped."""
    from rich.table import Table

    columns = summary["captions"]["columns"]
    selections = dict.fromkeys(
        f"{g['prompt']}: " + (f"BERTScore F1 >= {g['threshold']:g}" if g["threshold"] is not None else "filters only")
        for g in summary["groups"])
    captions = Table(title=f"Captions in the augmented file ({'; '.join(selections) or 'no prompts'})")
    captions.add_column("dataset")
    for column in columns:
        captions.add_column(column if column == "original" else f"+ {column}", justify="right")
    for dataset, row in summary["captions"]["rows"].items():
        captions.add_row(dataset, *[f"{row[c]:,}" if c in row else "-" for c in columns])

    groups = summary["groups"]
    names = [f"{g['dataset']} / {g['prompt']}" for g in groups]
    funnel = Table(title="From answers to added captions")
    funnel.add_column("", style="bold")
    for name in names:
        funnel.add_column(name, justify="right")
    rows = [("clips", "clips"), ("requests", "requests"), ("answered", "answered"), ("failed", "failed"),
            ("not asked yet", "pending"), ("malformed answers", "malformed"), ("cut at the size bound", "cut"),
            ("candidates", "candidates"),
            ("passed filters", "passed_filters"), ("below threshold", "below_threshold"),
            ("identical (F1 = 1)", "identical_score"), ("selected", "selected"),
            ("repeated for the clip", "repeated_for_clip"), ("added", "added")]
    for label, key in rows:
        if key in ("failed", "pending", "malformed", "cut", "identical_score") and not any(g[key] for g in groups):
            continue
        funnel.add_row(label, *[f"{g[key]:,}" for g in groups])
    funnel.add_row("added per clip", *[f"{g['mean_added_per_clip']:.2f}" for g in groups])
    funnel.add_row("mean F1 (passed)", *["-" if g["bertscore_f1"]["mean"] is None else
                                         f"{g['bertscore_f1']['mean']:.3f}" for g in groups])

    drops = Table(title="Dropped candidates, by reason")
    drops.add_column("reason")
    for name in names:
        drops.add_column(name, justify="right")
    reasons = [v for v in _DROP_VERDICTS if any(g["dropped"].get(v) for g in groups)]
    for reason in reasons:
        drops.add_row(reason, *[f"{g['dropped'].get(reason, 0):,}" for g in groups])
    return [captions, funnel] + ([drops] if reasons else [])
