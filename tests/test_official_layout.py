"""The official-layout tensors dcase9's modules do not hold, rebuilt: against the reference code's own
values (the laion fixture made by laion's code) and against the definitions (numpy's FFT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dcase9.models.checkpoints import read_checkpoint, state_dict_of, strip_prefix
from dcase9.models.official_layout import (laion_extra_keys, laion_fixed_tensors, laion_training_only_tensors,
                                            periodic_hann, resunet30_fixed_tensors)

FIXTURES = Path(__file__).parent / "fixtures"


def test_laion_tensors_are_what_the_reference_code_builds() -> None:
    """tests/fixtures/clap_tiny_laion.pt was written by laion's code (see make_clap_laion_fixture.py):
    our rebuilt fixed tensors equal its own, and the others have its keys, shapes and dtypes."""
    from tests.test_clap import tiny_spec

    reference = strip_prefix(state_dict_of(read_checkpoint(FIXTURES / "clap_tiny_laion.pt")), "module.")
    spec = tiny_spec()
    spec.model.audio_config.num_classes = 3  # the fixture's classifier size
    fixed = laion_fixed_tensors(spec)
    trained = laion_training_only_tensors(spec, seed=1)
    assert set(laion_extra_keys(reference)) == set(fixed) | set(trained)
    for key, value in fixed.items():
        assert value.dtype == reference[key].dtype and value.shape == reference[key].shape, key
        tolerance = 1e-9 if key.endswith("melW") else 0.0  # librosa's mel filters, float32 rounding
        assert float((value.double() - reference[key].double()).abs().max()) <= tolerance, key
    assert any(key.endswith("attn_mask") for key in fixed)
    for key, value in trained.items():
        assert value.dtype == reference[key].dtype and value.shape == reference[key].shape, key
    again = laion_training_only_tensors(spec, seed=1)
    assert all(torch.equal(again[k], v) for k, v in trained.items())  # seeded


def test_resunet30_stft_tensors_are_the_windowed_dft() -> None:
    n = 64
    tensors = resunet30_fixed_tensors(n)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "base.stft.conv_real.weight": (n // 2 + 1, 1, n), "base.stft.conv_imag.weight": (n // 2 + 1, 1, n),
        "base.istft.ola_window": (n,), "base.istft.conv_real.weight": (n, n, 1),
        "base.istft.conv_imag.weight": (n, n, 1)}
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann
    np.testing.assert_allclose(periodic_hann(n), window, atol=1e-15)
    frame = np.random.default_rng(0).standard_normal(n)
    # Forward: each output channel's kernel dotted with a frame gives the frame's windowed rFFT.
    spectrum = np.fft.rfft(frame * window)
    real = tensors["base.stft.conv_real.weight"][:, 0, :].double().numpy() @ frame
    imag = tensors["base.stft.conv_imag.weight"][:, 0, :].double().numpy() @ frame
    np.testing.assert_allclose(real + 1j * imag, spectrum, atol=1e-5)
    # Inverse: real(IDFT) of a full spectrum, windowed: conv_real @ re - conv_imag @ im.
    full = np.random.default_rng(1).standard_normal(n) + 1j * np.random.default_rng(2).standard_normal(n)
    inverse_real = tensors["base.istft.conv_real.weight"][:, :, 0].double().numpy()
    inverse_imag = tensors["base.istft.conv_imag.weight"][:, :, 0].double().numpy()
    np.testing.assert_allclose(inverse_real @ full.real - inverse_imag @ full.imag,
                               window * np.real(np.fft.ifft(full)), atol=1e-6)
    np.testing.assert_allclose(tensors["base.istft.ola_window"].double().numpy(), window ** 2, atol=1e-7)
