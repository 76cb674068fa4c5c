"""The metrics against a plain NumPy transcription of the baseline's `utils.py` formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcase9.metrics import SISDR_EPS, sdr, sdri, separation_metrics, sisdr

F32_EPS = np.finfo(np.float32).eps


def official_sdr(ref: np.ndarray, est: np.ndarray, eps: float = 1e-10) -> float:
    noise = est - ref
    numerator = np.clip(np.mean(ref ** 2), a_min=eps, a_max=None)
    denominator = np.clip(np.mean(noise ** 2), a_min=eps, a_max=None)
    return float(10.0 * np.log10(numerator / denominator))


def official_sisdr(ref: np.ndarray, est: np.ndarray, eps: float = F32_EPS) -> float:
    reference = ref.reshape(ref.size, 1)
    estimate = est.reshape(est.size, 1)
    rss = np.dot(reference.T, reference)
    a = (eps + np.dot(reference.T, estimate)) / (rss + eps)
    e_true = a * reference
    e_res = estimate - e_true
    return float(10 * np.log10((eps + (e_true ** 2).sum()) / (eps + (e_res ** 2).sum())))


def signals(seed: int, n: int = 16000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = (rng.standard_normal(n) * rng.uniform(0.01, 0.5)).astype(np.float32)
    noise = (rng.standard_normal(n) * rng.uniform(0.01, 0.5)).astype(np.float32)
    mixture = ref + noise
    estimate = (ref + rng.uniform(0.0, 1.0) * noise + 0.01 * rng.standard_normal(n)).astype(np.float32)
    return ref, estimate, mixture.astype(np.float32)


EDGE_CASES = {
    "silent reference": (np.zeros(800, np.float32), np.random.default_rng(1).standard_normal(800).astype(np.float32)),
    "silent estimate": (np.random.default_rng(2).standard_normal(800).astype(np.float32), np.zeros(800, np.float32)),
    "both silent": (np.zeros(800, np.float32), np.zeros(800, np.float32)),
    "perfect estimate": (np.sin(np.arange(800, dtype=np.float32) / 7), np.sin(np.arange(800, dtype=np.float32) / 7)),
    "scaled copy": (np.sin(np.arange(800, dtype=np.float32) / 7), 0.25 * np.sin(np.arange(800, dtype=np.float32) / 7)),
    "negated copy": (np.sin(np.arange(800, dtype=np.float32) / 7), -np.sin(np.arange(800, dtype=np.float32) / 7)),
    "tiny signals": (1e-7 * np.ones(800, np.float32), 2e-7 * np.ones(800, np.float32)),
    "dc offset": (np.ones(800, np.float32) + 0.1 * np.sin(np.arange(800, dtype=np.float32)),
                  np.ones(800, np.float32)),
}


@pytest.mark.parametrize("seed", range(12))
def test_random_signals_match_official_formulas(seed: int) -> None:
    ref, est, mix = signals(seed)
    ref64, est64, mix64 = (x.astype(np.float64) for x in (ref, est, mix))
    assert sdr(ref, est).item() == pytest.approx(official_sdr(ref64, est64), abs=1e-6)
    assert sisdr(ref, est).item() == pytest.approx(official_sisdr(ref64, est64), abs=1e-6)
    expected_sdri = official_sdr(ref64, est64) - official_sdr(ref64, mix64)
    assert sdri(ref, est, mix).item() == pytest.approx(expected_sdri, abs=1e-6)


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_match_official_formulas(case: str) -> None:
    ref, est = EDGE_CASES[case]
    ref64, est64 = ref.astype(np.float64), est.astype(np.float64)
    assert sdr(ref, est).item() == pytest.approx(official_sdr(ref64, est64), abs=1e-6)
    assert sisdr(ref, est).item() == pytest.approx(official_sisdr(ref64, est64), abs=1e-6)


def test_known_values() -> None:
    ref = np.sin(np.arange(1000) / 5.0)
    # A silent estimate leaves the reference as residual: SDR 0 dB exactly.
    assert sdr(ref, np.zeros_like(ref)).item() == pytest.approx(0.0, abs=1e-12)
    # Doubling the reference: residual = reference, SDR 0 dB; SI-SDR ignores scale (-> very large).
    assert sdr(ref, 2 * ref).item() == pytest.approx(0.0, abs=1e-12)
    assert sisdr(ref, 2 * ref).item() > 100
    # Both powers floored at 1e-10: silent reference and estimate give 0 dB, not NaN.
    assert sdr(np.zeros(10), np.zeros(10)).item() == 0.0
    # SI-SDR of silence against silence: eps / eps.
    assert sisdr(np.zeros(10), np.zeros(10)).item() == 0.0


def test_no_zero_mean_step() -> None:
    """The official SI-SDR does not remove the mean: a constant offset must change the result."""
    ref = np.sin(np.arange(1000) / 5.0)
    shifted = ref + 0.5
    assert sisdr(ref, shifted).item() < 10
    assert sisdr(ref, shifted).item() == pytest.approx(official_sisdr(ref, shifted), abs=1e-6)


def test_eps_is_float32_epsilon() -> None:
    assert pytest.approx(1.1920928955078125e-07) == SISDR_EPS


def test_batch_equals_one_at_a_time() -> None:
    batch = [signals(seed) for seed in range(5)]
    refs, ests, mixes = (np.stack(x) for x in zip(*batch, strict=True))
    batched = separation_metrics(refs, ests, mixes)
    for i, (ref, est, mix) in enumerate(batch):
        single = separation_metrics(ref, est, mix)
        for name in batched:
            assert batched[name][i].item() == pytest.approx(single[name].item(), abs=1e-12)


def test_length_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="length mismatch.*16000.*15999"):
        sdr(np.zeros(16000), np.zeros(15999))
    with pytest.raises(ValueError, match="length mismatch"):
        sisdr(np.zeros(16000), np.zeros(16001))
    with pytest.raises(ValueError, match="mixture has"):
        sdri(np.zeros(100), np.zeros(100), np.zeros(99))


def test_torch_inputs_and_dtype() -> None:
    ref, est, mix = signals(3)
    result = sdr(torch.from_numpy(ref), torch.from_numpy(est))
    assert result.dtype == torch.float64
    assert result.item() == pytest.approx(sdr(ref, est).item(), abs=1e-12)


def test_official_float32_arithmetic_is_within_round_off() -> None:
    """The evaluator computes in float32; its numbers differ from ours only by round-off."""
    for seed in range(5):
        ref, est, _ = signals(seed, n=160000)
        assert sdr(ref, est).item() == pytest.approx(official_sdr(ref, est), abs=1e-4)
        assert sisdr(ref, est).item() == pytest.approx(official_sisdr(ref, est, eps=F32_EPS), abs=1e-3)


def test_shared_terms_give_each_metrics_own_value_to_the_bit() -> None:
    """`score` computes the official four from shared terms; each equals its own `compute`, and a
    metric registered later runs its own."""
    from dcase9.metrics import Metric, compute_reference_metrics, reference_metrics, register_metric, \
        unregister_metric

    generator = torch.Generator().manual_seed(3)
    ref, noise = torch.randn(2, 4, 16000, generator=generator, dtype=torch.float64)
    est, mix = ref + 0.3 * noise, ref + noise.flip(-1)
    values = compute_reference_metrics(ref, est, mix)
    assert list(values) == [m.name for m in reference_metrics()] == ["sdr", "sdri", "sisdr", "input_sdr"]
    for metric in reference_metrics():
        assert metric.compute is not None
        assert torch.equal(values[metric.name], metric.compute(ref, est, mix)), metric.name
    register_metric(Metric("negative_sdr", "-SDR", lambda r, e, m: -sdr(r, e)))
    try:
        assert torch.equal(compute_reference_metrics(ref, est, mix)["negative_sdr"], -values["sdr"])
    finally:
        unregister_metric("negative_sdr")
