"""AudioLDM's front end (System 3) against an independent librosa computation, and its conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dcase9.models.audioldm import AudioLdmFrontEnd, AudioLdmMel, MelSettings, prepare_waveform

FIXTURE = Path(__file__).parent / "fixtures" / "audioldm_mel_librosa.npz"
# Log-mel values span about -11.5 (the 1e-5 floor) to 4; float32 round-off near the floor, where a
# mel value of ~2e-5 is a difference of two much larger FFT terms, reaches ~3e-5 in the log.
LOG_MEL_ATOL = 1e-4


@pytest.fixture(scope="module")
def librosa_reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def test_log_mel_equals_librosa(librosa_reference: dict[str, np.ndarray]) -> None:
    signal = torch.from_numpy(librosa_reference["signal"])[None]
    ours = AudioLdmMel()(signal)[0].numpy()
    expected = librosa_reference["log_mel_raw"]
    assert ours.shape == expected.shape == (signal.shape[-1] // 160 + 1, 64)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=LOG_MEL_ATOL)


def test_prepared_segment_equals_audioldm_recipe(librosa_reference: dict[str, np.ndarray]) -> None:
    """Mean removal, peak 0.5, zero padding to the segment, 1024 -> here 128 frames: as AudioLDM does."""
    frames = int(librosa_reference["target_frames"])
    signal = torch.from_numpy(librosa_reference["signal"])[None]
    prepared = AudioLdmFrontEnd(MelSettings(segment_frames=frames))(signal)
    assert prepared.segments == 1 and prepared.length == signal.shape[-1]
    assert prepared.mel.shape == (1, frames, 64)
    np.testing.assert_allclose(prepared.mel[0].numpy(), librosa_reference["log_mel_prepared"], rtol=0,
                               atol=LOG_MEL_ATOL)
    centred = signal - signal.mean()
    assert prepared.gain.item() == pytest.approx(0.5 / float(centred.abs().max()), rel=1e-6)


def test_ten_seconds_are_one_segment_of_1024_frames() -> None:
    settings = MelSettings()
    assert settings.segment_samples == 163_840  # 1024 frames of 160 samples: 10.24 s
    front_end = AudioLdmFrontEnd(settings)
    torch.manual_seed(0)
    clip = 0.1 * torch.randn(2, 160_000)
    prepared = front_end(clip)
    assert prepared.mel.shape == (2, 1024, 64) and prepared.segments == 1
    # Longer inputs: consecutive segments of 163,840 samples, each prepared on its own.
    segment = 0.1 * torch.randn(1, 163_840)
    long = torch.cat([segment, 4 * segment, segment[:, :10_000]], dim=-1)
    prepared = front_end(long)
    assert prepared.segments == 3 and prepared.mel.shape == (3, 1024, 64) and prepared.length == 337_680
    gains = prepared.gain[:, 0]
    assert gains[0] / gains[1] == pytest.approx(4.0, rel=1e-5)  # the louder segment gets the smaller gain
    torch.testing.assert_close(prepared.mel[0], prepared.mel[1])  # and then looks the same
    assert torch.isfinite(prepared.mel).all()


def test_prepare_waveform_ignores_padding_and_keeps_it_silent() -> None:
    signal = torch.cat([torch.full((1, 100), 0.3), torch.zeros(1, 60)], dim=-1)
    signal[0, :100] += torch.linspace(-0.1, 0.1, 100)
    valid = torch.arange(160)[None] < 100
    prepared, gain = prepare_waveform(signal, valid)
    assert prepared[0, :100].mean().abs() < 1e-6  # the DC offset is removed over the real samples only
    assert prepared[0, 100:].abs().max() == 0  # the padding stays zero
    assert prepared.abs().max().item() == pytest.approx(0.5, rel=1e-5)
    torch.testing.assert_close(prepared, (signal - signal[:, :100].mean()) * gain * valid)
    silent, silent_gain = prepare_waveform(torch.zeros(1, 160))
    assert torch.isfinite(silent_gain).all() and silent.abs().max() == 0
