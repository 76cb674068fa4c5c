"""Paired comparison of systems scored on the same clips.

For two systems A and B and one metric (SDRi by default), the per-clip difference d = A - B is
summarised by:
- its mean, with a percentile confidence interval from a seeded paired bootstrap: the clips are
  resampled with replacement (the same resampled clips for both systems, which is what "paired"
  means) `resamples` times, and the interval is the (1 - confidence)/2 and (1 + confidence)/2
  quantiles of the resampled means;
- win / tie / loss counts: a clip is a tie when |d| <= tie_margin (the metric's, in the registry of
  `dcase9.metrics`: 0.1 dB; 0.01 for ATS, whose values lie in [-1, 1]), a win for A when A is
  better by more than the margin (d > tie_margin, or d < -tie_margin for a metric where lower is
  better), a loss when B is;
- the same per 5 dB input-SNR bin (validation sets).

Clips whose value is not finite in either system (an all-zero estimate has SDR -inf) cannot be
averaged: they are left out of the pair and counted as `excluded`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dcase9.errors import ConfigError
from dcase9.files import write_json_atomic
from dcase9.metrics import describe_metric
from dcase9.scoring import SNR_BINS, pyplot, save_figure, snr_bin

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95
_CHUNK = 256  # resamples drawn at once: bounds memory at _CHUNK x clips indices


def bootstrap_mean_ci(diff: np.ndarray, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                      confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the mean of `diff` over `resamples` resamplings with replacement."""
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim != 1 or diff.size == 0:
        raise ValueError("bootstrap_mean_ci needs a non-empty 1-D array")
    if resamples < 1:
        raise ConfigError("the number of bootstrap resamples must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    n = diff.size
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, _CHUNK):
        count = min(_CHUNK, resamples - start)
        indices = rng.integers(0, n, size=(count, n))
        means[start:start + count] = diff[indices].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def win_tie_loss(diff: np.ndarray, tie_margin: float, higher_is_better: bool = True) -> tuple[int, int, int]:
    """Clips where A beats B by more than the margin, within it, and where B beats A."""
    if tie_margin < 0:
        raise ConfigError(f"the tie margin must not be negative, got {tie_margin}")
    diff = np.asarray(diff, dtype=np.float64) * (1.0 if higher_is_better else -1.0)
    wins = int(np.count_nonzero(diff > tie_margin))
    losses = int(np.count_nonzero(diff < -tie_margin))
    return wins, diff.size - wins - losses, losses


def compare_pair(a: Sequence[float], b: Sequence[float], *, tie_margin: float, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0, confidence: float = DEFAULT_CONFIDENCE, higher_is_better: bool = True) -> dict[str, Any]:
    """Mean of A - B with its bootstrap interval, and win/tie/loss counts, over the clips both scored."""
    a_values, b_values = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_values.shape != b_values.shape:
        raise ValueError(f"paired values differ in count: {a_values.size} and {b_values.size}")
    usable = np.isfinite(a_values) & np.isfinite(b_values)
    diff = a_values[usable] - b_values[usable]
    stats: dict[str, Any] = {"n": int(diff.size), "excluded": int(usable.size - diff.size)}
    if diff.size == 0:
        return {**stats, "mean_a": None, "mean_b": None, "mean_diff": None, "ci_low": None, "ci_high": None,
                "wins": 0, "ties": 0, "losses": 0}
    low, high = bootstrap_mean_ci(diff, resamples=resamples, seed=seed, confidence=confidence)
    wins, ties, losses = win_tie_loss(diff, tie_margin, higher_is_better)
    return {**stats, "mean_a": float(a_values[usable].mean()), "mean_b": float(b_values[usable].mean()),
            "mean_diff": float(diff.mean()), "ci_low": low, "ci_high": high,
            "wins": wins, "ties": ties, "losses": losses}


def bin_label(low: int, high: int) -> str:
    return f"[{low}, {high}{']' if high == SNR_BINS[-1][1] else ')'}"


def compare_systems(names: Sequence[str], values: Sequence[Sequence[float]], *, metric: str,
                    snr: Sequence[float | None] | None = None, tie_margin: float | None = None,
                    resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                    confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """Every pair (i < j, in the given order) of systems: overall and per input-SNR bin.

    `values[k]` holds system k's metric per clip, all in the same clip order; `snr` the clips'
    input SNRs (None on evaluation sets: no bins).
    """
    if len(names) != len(values):
        raise ValueError("one list of values per system")
    described = describe_metric(metric)
    margin = described.tie_margin if tie_margin is None else float(tie_margin)
    arrays = [np.asarray(v, dtype=np.float64) for v in values]
    bins: list[tuple[int, int]] = []
    clip_bins: list[tuple[int, int] | None] = []
    if snr is not None and all(s is not None for s in snr):
        clip_bins = [snr_bin(float(s)) for s in snr]  # type: ignore[arg-type]
        bins = list(SNR_BINS)
    settings = {"metric": metric, "label": described.label, "difference": "A - B",
                "higher_is_better": described.higher_is_better, "tie_margin": margin, "resamples": resamples, "seed": seed, "confidence": confidence,
                "interval": "percentile bootstrap over clips, resampled with replacement, paired"}
    pairs = []
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            kwargs = {"tie_margin": margin, "resamples": resamples, "seed": seed, "confidence": confidence,
                      "higher_is_better": described.higher_is_better}
            pair: dict[str, Any] = {"a": names[i], "b": names[j],
                                    **compare_pair(arrays[i], arrays[j], **kwargs)}  # type: ignore[arg-type]
            if bins:
                pair["by_input_snr"] = []
                for low, high in bins:
                    inside = np.array([b == (low, high) for b in clip_bins], dtype=bool)
                    pair["by_input_snr"].append({"bin": bin_label(low, high), "low": low, "high": high,
                                                 **compare_pair(arrays[i][inside], arrays[j][inside], **kwargs)})  # type: ignore[arg-type]
            pairs.append(pair)
    return {"settings": settings, "systems": list(names), "clips": int(arrays[0].size) if arrays else 0,
            "pairs": pairs}


def write_comparison(document: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """comparison.json (atomically) and, when there is a pair, comparison.png."""
    paths = {"json": out_dir / "comparison.json"}
    write_json_atomic(paths["json"], document)
    if any(p["mean_diff"] is not None for p in document["pairs"]):
        paths["plot"] = out_dir / "comparison.png"
        plot_comparison(document, paths["plot"])
    return paths


def plot_comparison(document: dict[str, Any], path: Path) -> None:
    """Mean difference and its interval per pair: overall, then per input-SNR bin."""
    plt = pyplot()
    settings = document["settings"]
    pairs = document["pairs"]
    groups = ["all clips"] + [b["bin"] for b in pairs[0].get("by_input_snr", [])]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 3.0), 4.2), dpi=110)
    width = 0.8 / max(1, len(pairs))
    for k, pair in enumerate(pairs):
        entries = [pair] + pair.get("by_input_snr", [])
        xs, ys, lows, highs = [], [], [], []
        for g, entry in enumerate(entries):
            if entry["mean_diff"] is None:
                continue
            xs.append(g - 0.4 + width * (k + 0.5))
            ys.append(entry["mean_diff"])
            lows.append(entry["mean_diff"] - entry["ci_low"])
            highs.append(entry["ci_high"] - entry["mean_diff"])
        ax.errorbar(xs, ys, yerr=[lows, highs], fmt="o", capsize=3, markersize=4,
                    label=f"{pair['a']} - {pair['b']}")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    if len(groups) > 1:
        ax.set_xlabel("input SNR (dB)")
    unit = describe_metric(settings["metric"]).unit
    unit = f" ({unit})" if unit else ""
    ax.set_ylabel(f"mean {settings['label']} difference{unit}")
    ax.set_title(f"Paired differences, {int(round(settings['confidence'] * 100))}% bootstrap intervals")
    if ax.get_legend_handles_labels()[0]:  # matplotlib warns (on the terminal) about a legend of nothing
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_figure(fig, path)
