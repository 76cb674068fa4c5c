"""The official Task 9 metrics: SDR, SDRi and SI-SDR exactly as the baseline's `utils.py` defines them.

- SDR is a plain signal-to-residual ratio with both powers floored at 1e-10
  (NOT bss_eval's SDR, which gives very different numbers).
- SI-SDR uses eps = float32 machine epsilon (the evaluator's references are float32), adds it to
  the projection's numerator and denominator and to both energies, and does NOT remove the mean.
- SDRi = SDR(reference, estimate) - SDR(reference, mixture).

Everything is vectorised over a batch (last axis = time) in float64 on the tensors' device. The
evaluator itself computes in float32; its sums carry round-off of order 1e-5 dB per clip, which
float64 avoids (well below the three decimals the challenge reports).
"""

from __future__ import annotations

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
