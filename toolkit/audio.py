"""Audio I/O, the official mixture recipe, and resampling.

Reading follows what the official evaluator gets from `librosa.load(path, sr=16000, mono=True)`:
float32 samples from soundfile, the mean over channels, and soxr "HQ" resampling when the file is
not at 16 kHz (librosa 0.10's default). Mixing follows `dcase_evaluator.py` operation by operation,
including the float precision NumPy 1.23 (the baseline's pinned version) gives each step.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from toolkit.errors import DataError
from toolkit.files import atomic_output

SAMPLE_RATE = 16000  # every Task 9 evaluation file: 16 kHz mono


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of `path` at `sample_rate`, as librosa.load(sr=..., mono=True) returns them."""
    path = Path(path)
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        reason = "file not found" if not path.exists() else f"unreadable audio ({exc})"
        raise DataError(reason, file=path) from exc
    truncated = wav_truncation(path)
    if truncated is not None:
        raise DataError(truncated, file=path)
    if not np.all(np.isfinite(data)):
        raise DataError(f"{non_finite_count(data)} NaN or infinite samples (nothing computed from this file "
                        "would be finite)", file=path)
    samples = data[:, 0] if data.shape[1] == 1 else np.mean(data, axis=1, dtype=np.float32)
    samples = np.ascontiguousarray(samples)
    if file_rate != sample_rate:
        import soxr

        samples = soxr.resample(samples, file_rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return samples


def non_finite_count(samples: np.ndarray) -> int:
    return int(np.count_nonzero(~np.isfinite(samples)))


_MAX_CHUNKS = 64  # chunks looked at before the audio data; real files have a handful


def wav_truncation(path: str | Path) -> str | None:
    """Why a RIFF WAV file holds less audio than its header declares, or None.

    libsndfile reads such a file without complaint and simply reports fewer frames, so a cut-off
    download looks like a short recording. None for complete files, for other formats, and for
    headers that leave the length open (streamed WAVs write 0 or 0xFFFFFFFF).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
                return None
            order = "<" if head[:4] == b"RIFF" else ">"
            position = 12
            for _ in range(_MAX_CHUNKS):
                fh.seek(position)
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                declared = struct.unpack(order + "I", chunk[4:])[0]
                if chunk[:4] == b"data":
                    available = size - position - 8
                    if declared in (0, 0xFFFFFFFF) or available >= declared:
                        return None
                    return (f"truncated WAV: the header declares {declared} bytes of audio data, the file holds "
                            f"{available} ({100 * available / declared:.1f}%); the end of the recording is missing")
                position += 8 + declared + (declared & 1)
    except OSError:
        return None
    return None


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE,
              subtype: str = "FLOAT") -> None:
    """Write a mono WAV atomically: a temporary file in the same folder, then an atomic rename.

    FLOAT keeps estimates bit-exact for scoring; PCM_16 is what most players expect.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"write_wav expects mono samples, got shape {samples.shape}")
    with atomic_output(path) as tmp:
        sf.write(str(tmp), samples, sample_rate, subtype=subtype, format="WAV")


def mix_at_snr(source: np.ndarray, noise: np.ndarray, snr_db: int | float) -> tuple[np.ndarray, np.ndarray]:
    """Build one validation mixture exactly as the official evaluator does.

    Returns (mixture, reference). The noise is scaled so that mean(source**2)/mean(noise**2) is
    `snr_db`; if the mixture peaks above 1, mixture AND reference are scaled by 0.9/peak.

    Precision: the evaluator ran under NumPy 1.23, where a float32 scalar divided by a Python
    float gives float64, and an array times a float64 scalar stays float32 (the scalar is rounded
    first). NumPy 2 would keep those scalars in float32, so we spell the promotions out.
    """
    source = np.asarray(source, dtype=np.float32)
    noise = np.asarray(noise, dtype=np.float32)
    if source.shape != noise.shape:
        raise ValueError(f"source and noise differ in length ({source.shape[-1]} vs {noise.shape[-1]} "
                         "samples); the official recipe adds them sample by sample")
    source_power = np.mean(source ** 2)  # float32, NumPy's pairwise sum
    noise_power = np.mean(noise ** 2)
    if noise_power == 0:
        raise ValueError("the noise clip is silent: the official recipe would divide by zero")
    desired_noise_power = np.float64(source_power) / (10 ** (snr_db / 10))
    scaling_factor = np.sqrt(desired_noise_power / np.float64(noise_power))
    mixture = source + noise * np.float32(scaling_factor)
    peak = np.max(np.abs(mixture))
    reference = source.copy()
    if peak > 1:
        gain = np.float32(0.9 / np.float64(peak))
        reference *= gain
        mixture *= gain
    return mixture, reference


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited sinc resampling along the last axis, on the tensor's device (julius).

    For 16 <-> 32 kHz round trips julius leaves an alias residual near -95 dB (measured), far
    below what changes a metric at three decimals; soxr is better but CPU-only.
    """
    if orig_rate == new_rate:
        return waveform
    import julius

    return julius.resample_frac(waveform, orig_rate, new_rate)
