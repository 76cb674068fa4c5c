"""Audio reading as librosa.load does it, the official mixing recipe, atomic writes, resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dcase9.audio import mix_at_snr, read_audio, resample, write_wav
from dcase9.errors import DataError
from dcase9.files import remove_partial_files
from dcase9.metrics import sdr


def test_read_pcm16_scaling_and_stereo_mean(tmp_path: Path) -> None:
    pcm = np.array([[0, 32767], [-32768, 16384], [100, -100]], dtype=np.int16)
    path = tmp_path / "stereo.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    samples = read_audio(path)
    expected = (pcm.astype(np.float32) / 32768.0).mean(axis=1)
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, expected.astype(np.float32))


def test_read_resamples_other_rates_with_soxr(tmp_path: Path) -> None:
    t = np.arange(32000) / 32000
    path = tmp_path / "32k.wav"
    sf.write(path, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 32000, subtype="FLOAT")
    samples = read_audio(path)
    assert samples.shape == (16000,)
    reference = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert sdr(reference[1000:-1000], samples[1000:-1000]).item() > 60


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing.wav.*not found"):
        read_audio(tmp_path / "missing.wav")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(DataError, match="garbage.wav.*unreadable"):
        read_audio(garbage)


def test_cut_off_flac_is_named_truncated(tmp_path: Path) -> None:
    # libsndfile reads a cut-off WAV as a short one (dcase9.audio.wav_truncation); a cut-off FLAC fails
    # to decode instead, which must not read as a mystery: the header's length and the cut are named
    whole = tmp_path / "whole.flac"
    sf.write(whole, (0.1 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32), 16000)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert read_audio(whole).shape == (32000,)
    with pytest.raises(DataError, match=r"cut.flac: truncated or damaged FLAC file: its header declares 32000 frames"):
        read_audio(cut)


def official_recipe_numpy1(source: np.ndarray, noise: np.ndarray, snr: int) -> tuple[np.ndarray, np.ndarray]:
    """dcase_evaluator.py step by step, with NumPy 1.23's promotions made explicit (float64 scalars)."""
    source = source.copy()
    source_power = np.mean(source ** 2)
    noise_power = np.mean(noise ** 2)
    desired_noise_power = float(source_power) / (10 ** (snr / 10))
    scaling_factor = np.sqrt(desired_noise_power / float(noise_power))
    noise = noise * np.float32(scaling_factor)
    mixture = source + noise
    max_value = np.max(np.abs(mixture))
    if max_value > 1:
        source *= np.float32(0.9 / float(max_value))
        mixture *= np.float32(0.9 / float(max_value))
    return mixture, source


@pytest.mark.parametrize("snr", [-15, -7, 0, 3, 15])
def test_mixture_matches_recipe_and_hits_the_snr(snr: int) -> None:
    rng = np.random.default_rng(snr + 100)
    source = (0.3 * rng.standard_normal(16000)).astype(np.float32)
    noise = (0.2 * rng.standard_normal(16000)).astype(np.float32)
    mixture, reference = mix_at_snr(source, noise, snr)
    expected_mixture, expected_reference = official_recipe_numpy1(source, noise, snr)
    np.testing.assert_array_equal(mixture, expected_mixture)
    np.testing.assert_array_equal(reference, expected_reference)
    assert mixture.dtype == np.float32 and reference.dtype == np.float32
    # The input SDR of a mixture is its SNR: the evaluator's SDRi baseline.
    assert sdr(reference, mixture).item() == pytest.approx(snr, abs=1e-4)


def test_declipping_scales_mixture_and_reference_together() -> None:
    rng = np.random.default_rng(7)
    source = (0.9 * np.sign(rng.standard_normal(8000))).astype(np.float32)
    noise = (0.9 * rng.standard_normal(8000)).astype(np.float32)
    mixture, reference = mix_at_snr(source, noise, -5)
    assert np.max(np.abs(mixture)) == pytest.approx(0.9, abs=1e-6)
    ratio = reference / source
    assert np.allclose(ratio, ratio[0]) and ratio[0] < 1
    assert sdr(reference, mixture).item() == pytest.approx(-5, abs=1e-4)


def test_mixing_rejects_unequal_lengths_and_silent_noise() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        mix_at_snr(np.ones(10, np.float32), np.ones(11, np.float32), 0)
    with pytest.raises(ValueError, match="silent"):
        mix_at_snr(np.ones(10, np.float32), np.zeros(10, np.float32), 0)


def test_mixing_keeps_numpy1_float64_scale_factor() -> None:
    """Under NumPy 2 rules the scale factor would be float32 arithmetic; the evaluator's was float64."""
    rng = np.random.default_rng(11)
    source = (0.1 * rng.standard_normal(1000)).astype(np.float32)
    noise = (0.1 * rng.standard_normal(1000)).astype(np.float32)
    mixture, _ = mix_at_snr(source, noise, 7)
    float64_scale = np.sqrt(np.float64(np.mean(source ** 2)) / 10 ** 0.7 / np.float64(np.mean(noise ** 2)))
    np.testing.assert_array_equal(mixture, source + noise * np.float32(float64_scale))


def test_write_wav_is_atomic_and_exact(tmp_path: Path) -> None:
    samples = np.random.default_rng(0).uniform(-1.5, 1.5, 1234).astype(np.float32)
    path = tmp_path / "sub" / "x.wav"
    write_wav(path, samples)
    back, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    np.testing.assert_array_equal(back, samples)
    assert not list(path.parent.glob(".*.part"))


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "write", explode)
    with pytest.raises(KeyboardInterrupt):
        write_wav(tmp_path / "y.wav", np.zeros(10, np.float32))
    assert not (tmp_path / "y.wav").exists()
    assert not list(tmp_path.glob(".*.part"))
    (tmp_path / ".z.wav.0a1b2c3d.part").write_bytes(b"x")  # what a hard kill leaves
    (tmp_path / ".notes.part").write_bytes(b"mine")  # not of our pattern: a user's file stays
    assert remove_partial_files(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [".notes.part"]


def test_resample_round_trip_16_32_16() -> None:
    t = torch.arange(16000) / 16000
    x = (0.5 * torch.sin(2 * np.pi * 1000 * t))[None]
    up = resample(x, 16000, 32000)
    assert up.shape[-1] == 32000
    back = resample(up, 32000, 16000)
    assert back.shape == x.shape
    assert sdr(x[0, 500:-500], back[0, 500:-500]).item() > 60


def windowed_sinc_by_summation(x: np.ndarray, orig: int, new: int, zeros: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """The published formula evaluated directly, one output sample at a time, in float64:
    y[j] = sum_i x[i] * (c/o) * sinc(c*(i/o - j/n)) * cos(pi*c*(i/o - j/n) / (2*zeros))**2 where
    |c*(i/o - j/n)| <= zeros, with o, n the rates divided by their gcd and c = rolloff * min(o, n)."""
    g = np.gcd(orig, new)
    o, n = orig // g, new // g
    c = rolloff * min(o, n)
    i = np.arange(len(x))
    out = np.empty(-(-len(x) * n // o))
    for j in range(len(out)):
        t = c * (i / o - j / n)
        taps = np.where(np.abs(t) <= zeros, np.sinc(t) * np.cos(np.pi * t / (2 * zeros)) ** 2, 0.0)
        out[j] = (c / o) * np.dot(taps, x)
    return out


@pytest.mark.parametrize("orig,new", [(32000, 48000), (16000, 48000), (48000, 16000), (16000, 32000),
                                      (32000, 16000), (44100, 16000), (22050, 16000)])
def test_sinc_resample_is_the_hann_windowed_sinc_formula(orig: int, new: int) -> None:
    from dcase9.audio import sinc_resample

    rng = np.random.default_rng(orig + new)
    x = rng.standard_normal(997)
    expected = windowed_sinc_by_summation(x, orig, new)
    got = sinc_resample(torch.from_numpy(x)[None], orig, new)[0].numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # float32 signals: the filters are applied in float32
    got32 = sinc_resample(torch.from_numpy(x.astype(np.float32)).expand(3, -1), orig, new)
    assert got32.dtype == torch.float32 and got32.shape == (3, len(expected))
    np.testing.assert_allclose(got32[2].numpy(), expected, atol=2e-5)
    same = torch.from_numpy(x)
    assert sinc_resample(same, orig, orig) is same


def test_sinc_resample_keeps_a_tone_below_the_roll_off() -> None:
    from dcase9.audio import sinc_resample

    t = np.arange(32000) / 32000
    x = torch.from_numpy(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    y = sinc_resample(x, 32000, 48000)
    assert y.shape == (48000,)
    expected = np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000)
    assert sdr(expected[500:-500], y[500:-500].numpy()).item() > 60
