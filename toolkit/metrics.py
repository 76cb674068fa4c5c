"""The official Task 9 metrics: SDR, SDRi and SI-SDR exactly as the baseline's `utils.py` defines them.

- SDR is a plain signal-to-residual ratio with both powers floored at 1e-10
  (NOT bss_eval's SDR, which gives very different numbers).
- SI-SDR uses eps = float32 machine epsilon (the evaluator's references are float32), adds it to
  the projection's numerator and denominator and to both energies, and does NOT remove the mean.
- SDRi = SDR(reference, estimate) - SDR(reference, mixture).

AudioSep's benchmark evaluators (`evaluation/evaluate_*.py`, through its `utils.py`) define SDR and
SI-SDR by the same formulas (the same floors and eps, float32 references), so these functions serve
both; its VGGSound evaluator adds SI-SDRi = SI-SDR(reference, estimate) - SI-SDR(reference, mixture),
registered here for the benchmarks only (`Metric.benchmarks_only`): the Task 9 reports keep their columns.

Everything is vectorised over a batch (last axis = time) in float64 on the tensors' device. The
evaluator itself computes in float32; its sums carry round-off of order 1e-5 dB per clip, which
float64 avoids (well below the three decimals the challenge reports).

The registry at the end (`Metric`, `register_metric`) lists every per-clip score and how it is
shown; `score`, its tables, the listening page and submission meta files all follow it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

SDR_FLOOR = 1e-10  # the evaluator's `eps` in calculate_sdr (a clip floor on both mean powers)
SISDR_EPS = float(np.finfo(np.float32).eps)  # np.finfo(ref.dtype).eps for float32 references

ArrayLike = torch.Tensor | np.ndarray


def _as_float64(x: ArrayLike, device: torch.device | str | None = None) -> torch.Tensor:
    tensor = torch.as_tensor(x)
    return tensor.to(device=device if device is not None else tensor.device, dtype=torch.float64)


def _check_pair(reference: torch.Tensor, estimate: torch.Tensor, name: str = "estimate") -> None:
    if reference.shape[-1] != estimate.shape[-1]:
        raise ValueError(f"length mismatch: reference has {reference.shape[-1]} samples, "
                         f"{name} has {estimate.shape[-1]}")
    if reference.shape != estimate.shape:
        raise ValueError(f"shape mismatch: reference {tuple(reference.shape)}, {name} {tuple(estimate.shape)}")


def sdr(reference: ArrayLike, estimate: ArrayLike) -> torch.Tensor:
    """10 log10( max(mean(ref^2), 1e-10) / max(mean((est - ref)^2), 1e-10) ), per signal, in dB."""
    ref = _as_float64(reference)
    est = _as_float64(estimate, ref.device)
    _check_pair(ref, est)
    signal = torch.clamp(torch.mean(ref ** 2, dim=-1), min=SDR_FLOOR)
    residual = torch.clamp(torch.mean((est - ref) ** 2, dim=-1), min=SDR_FLOOR)
    return 10.0 * torch.log10(signal / residual)


def sisdr(reference: ArrayLike, estimate: ArrayLike, eps: float = SISDR_EPS) -> torch.Tensor:
    """Scale-invariant SDR of the baseline: a = (eps + <ref, est>) / (<ref, ref> + eps), no zero-mean."""
    ref = _as_float64(reference)
    est = _as_float64(estimate, ref.device)
    _check_pair(ref, est)
    scale = (eps + torch.sum(ref * est, dim=-1, keepdim=True)) / (torch.sum(ref * ref, dim=-1, keepdim=True) + eps)
    target = scale * ref
    target_energy = torch.sum(target ** 2, dim=-1)
    residual_energy = torch.sum((est - target) ** 2, dim=-1)
    return 10.0 * torch.log10((eps + target_energy) / (eps + residual_energy))


def sdri(reference: ArrayLike, estimate: ArrayLike, mixture: ArrayLike) -> torch.Tensor:
    """SDR improvement of the estimate over the unprocessed mixture, in dB."""
    ref = _as_float64(reference)
    mix = _as_float64(mixture, ref.device)
    _check_pair(ref, mix, name="mixture")
    return sdr(ref, estimate) - sdr(ref, mix)


def separation_metrics(reference: ArrayLike, estimate: ArrayLike, mixture: ArrayLike) -> dict[str, torch.Tensor]:
    """All official metrics at once (plus the input SDR, i.e. SDR of the mixture) for a batch."""
    ref = _as_float64(reference)
    est = _as_float64(estimate, ref.device)
    mix = _as_float64(mixture, ref.device)
    _check_pair(ref, est)
    _check_pair(ref, mix, name="mixture")
    sdr_est = sdr(ref, est)
    sdr_mix = sdr(ref, mix)
    return {"sdr": sdr_est, "sdri": sdr_est - sdr_mix, "sisdr": sisdr(ref, est), "input_sdr": sdr_mix}


# ------------------------------------------------------------------------------------------------
# The registry: every per-clip score, and how each consumer shows it


ReferenceMetric = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Metric:
    """One score per clip and everything a consumer needs to show it.

    `compute(reference, estimate, mixture)` takes `(batch, samples)` tensors of equal length on one
    device (`score` passes float64, widened once per batch; training validation float32) and returns
    one value per clip; `score` runs it on every validation clip (metrics
    without `compute`, such as ATS, need a model and are given to `score` as scorers). The registry
    (`register_metric`) drives `score` (per_clip.csv columns, summary.json means and medians), the
    tables of `dcase9 score`, the listening page and its paired comparison, and the `results.*`
    values a submission profile may put in the meta file: a new reference-based metric is its
    function plus one `register_metric` call.
    """

    name: str  # per_clip.csv column, summary.json key, `results.<name>` in a submission profile
    label: str  # in tables, on the page, in plots
    compute: ReferenceMetric | None = None  # None: computed by a scorer given at scoring time (ATS)
    higher_is_better: bool = True
    unit: str = "dB"  # "" for unitless scores
    page_decimals: int = 2  # on the listening page (tables print the challenge's 3)
    tie_margin: float = 0.1  # the comparison counts |A - B| <= this as a tie
    shown: bool = True  # in tables, on the page and in submissions (input SDR describes the mixture, not a system)
    # The values a report may hold (README: "Values out of range"). The official SDRs floor both mean
    # powers at 1e-10, so audio within +-1000 of full scale stays within +-200 dB (SDRi +-400);
    # anything past +-1000 dB is a damaged or hand-edited file, not a score.
    plausible: tuple[float, float] = (-1000.0, 1000.0)
    benchmarks_only: bool = False  # scored on AudioSep's benchmarks only (SI-SDRi), not on the Task 9 sets

    @property
    def needs_reference(self) -> bool:
        return self.compute is not None


_REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add a metric (after the ones already there, in that order everywhere); returns it."""
    if not metric.name.isidentifier():
        raise ValueError(f"metric name {metric.name!r}: use letters, digits and underscores")
    if metric.name in _REGISTRY and _REGISTRY[metric.name] != metric:
        raise ValueError(f"metric {metric.name!r} is registered already")
    _REGISTRY[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric added at run time (tests, notebooks)."""
    _REGISTRY.pop(name, None)


def registered_metrics() -> list[Metric]:
    """Every registered metric, in registration order."""
    return list(_REGISTRY.values())


def reference_metrics(benchmarks: bool = False) -> list[Metric]:
    """The registered metrics `score` computes from references (with `benchmarks`: on AudioSep's benchmarks,
    whose reports add the metrics registered for them)."""
    return [m for m in _REGISTRY.values() if m.compute is not None and (benchmarks or not m.benchmarks_only)]


def describe_metric(name: str) -> Metric:
    """The registered metric `name`, or a plain description of one that is not registered (a scorer
    given to `score` under a new name)."""
    return _REGISTRY.get(name) or Metric(name, name, unit="", shown=True)


def shown_metrics(names: Sequence[str]) -> list[str]:
    """Of `names`, those tables and pages show, in registry order (then unregistered ones as given)."""
    present = set(names)
    ordered = [m.name for m in _REGISTRY.values() if m.name in present and m.shown]
    return ordered + [n for n in names if n not in _REGISTRY]


def compute_reference_metrics(reference: torch.Tensor, estimate: torch.Tensor,
                              mixture: torch.Tensor, benchmarks: bool = False) -> dict[str, torch.Tensor]:
    """Every registered reference-based metric of a batch, by name (`benchmarks`: see `reference_metrics`).
    The official four share their terms (`separation_metrics`: each SDR computed once, not twice), which
    gives the values each one's `compute` gives alone, to the bit; a metric registered later runs its own
    `compute`."""
    shared = separation_metrics(reference, estimate, mixture)
    values = {}
    for metric in reference_metrics(benchmarks):
        assert metric.compute is not None
        official = _OFFICIAL_COMPUTE.get(metric.name)
        if metric.name == "sisdri" and metric.compute is official:
            values[metric.name] = shared["sisdr"] - sisdr(reference, mixture)
            continue
        values[metric.name] = shared[metric.name] if metric.compute is official else metric.compute(
            reference, estimate, mixture)
    return values


_OFFICIAL_COMPUTE: dict[str, ReferenceMetric] = {
    "sdr": lambda reference, estimate, mixture: sdr(reference, estimate),
    "sdri": sdri,
    "sisdr": lambda reference, estimate, mixture: sisdr(reference, estimate),
    "input_sdr": lambda reference, estimate, mixture: sdr(reference, mixture),
    "sisdri": lambda reference, estimate, mixture: sisdr(reference, estimate) - sisdr(reference, mixture),
}
register_metric(Metric("sdr", "SDR", _OFFICIAL_COMPUTE["sdr"]))
register_metric(Metric("sdri", "SDRi", _OFFICIAL_COMPUTE["sdri"]))
register_metric(Metric("sisdr", "SI-SDR", _OFFICIAL_COMPUTE["sisdr"]))
register_metric(Metric("input_sdr", "input SDR", _OFFICIAL_COMPUTE["input_sdr"], shown=False))
register_metric(Metric("sisdri", "SI-SDRi", _OFFICIAL_COMPUTE["sisdri"], benchmarks_only=True))
register_metric(Metric("ats", "ATS", None, unit="", page_decimals=3, tie_margin=0.01,
                       plausible=(-1.001, 1.001)))  # a cosine similarity, with float32 round-off  # dcase9.ats.AtsScorer
