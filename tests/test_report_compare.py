"""The paired comparison's statistics, checked against independent computations on small numbers."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from dcase9.errors import ConfigError
from dcase9.report.compare import bootstrap_mean_ci, compare_pair, compare_systems, win_tie_loss, write_comparison


def test_identical_systems_differ_by_nothing_and_tie_everywhere() -> None:
    values = [3.5, -1.0, 12.25, 0.0, 7.0]
    stats = compare_pair(values, values, tie_margin=0.1, resamples=500)
    assert stats["mean_diff"] == 0.0 and stats["ci_low"] == 0.0 and stats["ci_high"] == 0.0
    assert (stats["wins"], stats["ties"], stats["losses"]) == (0, 5, 0)
    assert stats["n"] == 5 and stats["excluded"] == 0


def test_the_interval_matches_the_exact_bootstrap_distribution() -> None:
    # Four clips: every one of the 4**4 resamples is equally likely; their means are the exact
    # bootstrap distribution, whose quantiles the Monte Carlo interval estimates.
    diff = np.array([0.0, 1.0, 2.0, 10.0])
    exact = [float(np.mean(diff[list(pick)])) for pick in itertools.product(range(4), repeat=4)]
    exact_low, exact_high = np.quantile(exact, [0.025, 0.975])
    low, high = bootstrap_mean_ci(diff, resamples=40_000, seed=3)
    assert low == pytest.approx(exact_low, abs=0.26)  # the support is spaced 0.25 apart
    assert high == pytest.approx(exact_high, abs=0.26)
    assert exact_low < 1.0 < exact_high  # a wide interval: the check above is not vacuous


def test_the_interval_contains_the_true_difference_and_has_the_normal_width() -> None:
    rng = np.random.default_rng(11)
    b = rng.normal(5.0, 3.0, size=400)
    a = b + 1.0 + rng.normal(0.0, 1.0, size=400)  # true mean difference 1.0, per-clip sd 1.0
    stats = compare_pair(a, b, tie_margin=0.1, resamples=4000, seed=0)
    assert stats["ci_low"] < 1.0 < stats["ci_high"]
    assert stats["mean_diff"] == pytest.approx(float(np.mean(a - b)), abs=1e-12)
    # Independent: the normal approximation's 95% interval, mean +- 1.96 sd / sqrt(n).
    half = 1.96 * float(np.std(a - b, ddof=1)) / math.sqrt(400)
    assert stats["ci_high"] - stats["ci_low"] == pytest.approx(2 * half, rel=0.15)
    assert stats["mean_a"] == pytest.approx(float(a.mean())) and stats["mean_b"] == pytest.approx(float(b.mean()))


def test_the_seed_makes_it_deterministic() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    first = compare_pair(a, b, tie_margin=0.1, resamples=1000, seed=7)
    assert compare_pair(a, b, tie_margin=0.1, resamples=1000, seed=7) == first
    other = compare_pair(a, b, tie_margin=0.1, resamples=1000, seed=8)
    assert (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])
    assert other["mean_diff"] == first["mean_diff"]


def test_win_tie_loss_counts_with_the_margin() -> None:
    diff = np.array([0.05, -0.05, 0.1, -0.1, 0.2, -0.3, 0.0])
    assert win_tie_loss(diff, 0.1) == (1, 5, 1)  # |d| <= margin is a tie, boundaries included
    assert win_tie_loss(diff, 0.0) == (3, 1, 3)  # only an exact zero ties
    with pytest.raises(ConfigError):
        win_tie_loss(diff, -1.0)


def test_non_finite_clips_are_left_out_and_counted() -> None:
    stats = compare_pair([1.0, float("-inf"), 3.0], [0.0, 1.0, float("nan")], tie_margin=0.1, resamples=100)
    assert stats["n"] == 1 and stats["excluded"] == 2 and stats["mean_diff"] == 1.0
    empty = compare_pair([float("nan")], [1.0], tie_margin=0.1)
    assert empty["n"] == 0 and empty["mean_diff"] is None and empty["wins"] == 0


def test_every_pair_and_every_input_snr_bin(tmp_path: Path) -> None:
    snr = [-15, -12, -5, 0, 4, 15]
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    b = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    c = [0.0, 0.0, 0.0, 0.0, 0.0, 9.0]
    doc = compare_systems(["a", "b", "c"], [a, b, c], metric="sdri", snr=snr, resamples=200, seed=1)
    assert [(p["a"], p["b"]) for p in doc["pairs"]] == [("a", "b"), ("a", "c"), ("b", "c")]
    ab = doc["pairs"][0]
    assert ab["mean_diff"] == pytest.approx(2.5) and (ab["wins"], ab["ties"], ab["losses"]) == (5, 1, 0)
    by_bin = {entry["bin"]: entry for entry in ab["by_input_snr"]}
    assert [entry["n"] for entry in ab["by_input_snr"]] == [2, 0, 1, 2, 0, 1]  # 0 and 4 dB share [0, 5)
    assert by_bin["[-15, -10)"]["mean_diff"] == pytest.approx(0.5)  # clips 1 and 2: differences 0 and 1
    assert by_bin["[10, 15]"]["mean_diff"] == pytest.approx(5.0) and by_bin["[5, 10)"]["mean_diff"] is None
    assert doc["settings"]["tie_margin"] == 0.1 and doc["settings"]["seed"] == 1
    ats = compare_systems(["a", "b"], [a, b], metric="ats", snr=None, resamples=10)
    assert ats["settings"]["tie_margin"] == 0.01 and "by_input_snr" not in ats["pairs"][0]
    paths = write_comparison(doc, tmp_path)
    assert json.loads(paths["json"].read_text()) == doc
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.part"))
