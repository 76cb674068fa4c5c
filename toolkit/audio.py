"""Audio I/O, the official mixture recipe, and resampling.

Reading follows what the official evaluator gets from `librosa.load(path, sr=16000, mono=True)`:
float32 samples from soundfile, the mean over channels, and soxr "HQ" resampling when the file is
not at 16 kHz (librosa 0.10's default). Mixing follows `dcase_evaluator.py` operation by operation,
including the float precision NumPy 1.23 (the baseline's pinned version) gives each step.

Recordings of any format, rate, channel count and length (`dcase9 separate`): `probe_recording`
decodes a file once, in blocks, and refuses what cannot be separated (naming the file);
`read_blocks` then streams it as `(channels, frames)` blocks, so a long file is never held whole;
`AudioWriter` writes an output block by block, atomically.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from dcase9.errors import ConfigError, DataError
from dcase9.files import atomic_output, describe_non_file

SAMPLE_RATE = 16000  # every Task 9 evaluation file: 16 kHz mono
# The sample rates dcase9 separates: telephone speech to studio masters (README: "Values out of range").
SAMPLE_RATE_RANGE = (1000, 384_000)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of `path` at `sample_rate`, as librosa.load(sr=..., mono=True) returns them."""
    path = Path(path)
    problem = describe_non_file(path)  # a folder, a named pipe or a device is not audio (and could hang a read)
    if problem is not None:
        raise DataError(problem, file=path)
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(read_failure(path, exc), file=path) from exc
    truncated = wav_truncation(path)
    if truncated is not None:
        raise DataError(truncated, file=path)
    if not np.all(np.isfinite(data)):
        raise DataError(f"{non_finite_count(data)} NaN or infinite samples (nothing computed from this file "
                        "would be finite)", file=path)
    samples = data[:, 0] if data.shape[1] == 1 else np.mean(data, axis=1, dtype=np.float32)
    return resample_hq(np.ascontiguousarray(samples), file_rate, sample_rate)


def read_failure(path: Path, exc: Exception) -> str:
    """Why reading failed. A header that parses but audio that does not decode is, in practice, a
    cut-off download or copy (a FLAC or OGG file stops decoding where it was cut): say so."""
    problem = describe_non_file(path)
    if problem is not None:
        return problem
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return f"unreadable audio ({exc})"
    declared = f"{info.frames} frames ({info.frames / info.samplerate:.2f} s)" if info.samplerate else "its length"
    return (f"truncated or damaged {info.format} file: its header declares {declared}, but decoding the audio "
            f"failed ({exc})")


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
              subtype: str = "FLOAT", before_replace: Callable[[Path], None] | None = None) -> None:
    """Write a mono WAV atomically: a temporary file in the same folder, then an atomic rename
    (`before_replace`: see `atomic_output`).

    FLOAT keeps estimates bit-exact for scoring; PCM_16 is what most players expect.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"write_wav expects mono samples, got shape {samples.shape}")
    with atomic_output(path, before_replace) as tmp:
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


# How the engine moves audio between 16 kHz and a model's rate (`dcase9 infer --resampler`):
# soxr HQ on the CPU (as librosa.load and AudioSep's own pipeline do), or julius on the device.
RESAMPLERS: tuple[str, ...] = ("soxr", "julius")


def resampled_length(length: int, orig_rate: int, new_rate: int) -> int:
    """ceil(length * new / orig): the length librosa.resample gives (its `fix=True`)."""
    return -(-length * new_rate // orig_rate)


def resample_hq(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """soxr "HQ" resampling of mono float32 samples on the CPU, as librosa.resample(res_type="soxr_hq")
    does it: soxr's output cut or zero-padded to ceil(n * new / orig) samples, float32."""
    if orig_rate == new_rate:
        return samples
    import soxr

    out = soxr.resample(np.asarray(samples, dtype=np.float32), orig_rate, new_rate, quality="HQ")
    length = resampled_length(samples.shape[-1], orig_rate, new_rate)
    if out.shape[-1] < length:
        out = np.pad(out, (0, length - out.shape[-1]))
    return np.ascontiguousarray(out[:length], dtype=np.float32)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited sinc resampling along the last axis, on the tensor's device (julius).

    For 16 <-> 32 kHz round trips julius leaves an alias residual near -95 dB (measured), but its
    low-pass (roll-off 0.945 of the lower Nyquist) also removes what soxr keeps near 8 kHz: System 2
    through julius agrees with AudioSep's soxr pipeline only to 34-49 dB, hence soxr by default.
    """
    if orig_rate == new_rate:
        return waveform
    import julius

    return julius.resample_frac(waveform, orig_rate, new_rate)


def sinc_resample(waveform: torch.Tensor, orig_rate: int, new_rate: int, *, lowpass_filter_width: int = 6,
                  rolloff: float = 0.99) -> torch.Tensor:
    """Hann-windowed sinc interpolation along the last axis, on the tensor's device: the published
    algorithm of torchaudio's `functional.resample` with its defaults (6 zero crossings, roll-off 0.99),
    which the seed authors' CLAPScore code uses. torchaudio itself is not needed.

    With g = gcd(orig, new), o = orig / g, n = new / g, the cutoff c = rolloff * min(o, n) and
    h(t) = sinc(t) cos²(pi t / (2 L)) for |t| <= L (else 0), L = lowpass_filter_width:

        y[j] = (c / o) * sum_i x[i] h(c (i / o - j / n)),   j = 0 .. ceil(n N / o) - 1,

    x taken as zero outside its N samples. Output j = m n + k (phase k) only needs the inputs
    i = m o + p with -w <= p < w + o, w = ceil(L o / c), so the n phase filters run as one strided
    convolution. The filters are computed in float64 (torchaudio: in the signal's dtype; the two
    differ by float32 rounding, ~1e-7) and applied in the signal's dtype.
    """
    if orig_rate == new_rate:
        return waveform
    if orig_rate <= 0 or new_rate <= 0 or lowpass_filter_width <= 0:
        raise ValueError("sample rates and lowpass_filter_width must be positive")
    g = math.gcd(int(orig_rate), int(new_rate))
    o, n = int(orig_rate) // g, int(new_rate) // g
    cutoff = rolloff * min(o, n)
    width = math.ceil(lowpass_filter_width * o / cutoff)
    offsets = torch.arange(-width, width + o, dtype=torch.float64, device=waveform.device) / o
    phases = torch.arange(n, dtype=torch.float64, device=waveform.device)[:, None] / n
    t = ((offsets[None, :] - phases) * cutoff).clamp(-lowpass_filter_width, lowpass_filter_width)
    filters = torch.special.sinc(t) * torch.cos(t * (math.pi / (2 * lowpass_filter_width))) ** 2 * (cutoff / o)
    shape = waveform.shape
    x = torch.nn.functional.pad(waveform.reshape(-1, 1, shape[-1]), (width, width + o))
    y = torch.nn.functional.conv1d(x, filters.to(waveform.dtype)[:, None, :], stride=o)  # (batch, phase, block)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)[:, : resampled_length(shape[-1], o, n)]
    return y.reshape(*shape[:-1], y.shape[-1])


# -- recordings of any format, rate, channel count and length ------------------------------------------

BLOCK_FRAMES = 1 << 16  # frames per block read from a recording (about 1.4 s at 48 kHz)


@dataclass(frozen=True)
class Recording:
    """An audio file `probe_recording` decoded in full and found fit to separate."""

    path: Path
    sample_rate: int
    channels: int
    frames: int  # as decoded (a header's count can be an estimate: MP3)
    format: str  # libsndfile's name of the container: WAV, FLAC, OGG, MP3, ...
    subtype: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def readable_formats() -> str:
    """The containers this libsndfile reads (MP3 only where it was built with it)."""
    return ", ".join(sorted(sf.available_formats()))


def probe_recording(path: str | Path, *, min_seconds: float = 0.0) -> Recording:
    """Decode `path` once, block by block (bounded memory for any length), and return what it holds.

    A DataError naming the file refuses what cannot be separated: not a regular file, a format this
    libsndfile does not read, a damaged or truncated file, a rate outside `SAMPLE_RATE_RANGE`, no
    samples (or less than `min_seconds` of them), NaN or infinite samples, or silence (every sample zero)."""
    path = Path(path)
    problem = describe_non_file(path)
    if problem is not None:
        raise DataError(problem, file=path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"not audio that libsndfile {sf.__libsndfile_version__} reads ({exc}); it reads "
                        f"{readable_formats()}", file=path) from None
    if not SAMPLE_RATE_RANGE[0] <= info.samplerate <= SAMPLE_RATE_RANGE[1]:
        raise DataError(f"sample rate {info.samplerate} Hz is outside {SAMPLE_RATE_RANGE[0]}..{SAMPLE_RATE_RANGE[1]} "
                        "Hz", file=path)
    truncated = wav_truncation(path)
    if truncated is not None:
        raise DataError(truncated, file=path)
    frames = non_finite = 0
    audible = False
    try:
        with sf.SoundFile(str(path)) as audio:
            for block in audio.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                frames += block.shape[0]
                non_finite += non_finite_count(block)
                audible = audible or bool(np.any(block))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(read_failure(path, exc), file=path) from None
    seconds = frames / info.samplerate
    if frames == 0:
        raise DataError("an empty recording (0 samples): nothing to separate", file=path)
    if seconds < min_seconds:
        raise DataError(f"{frames} samples ({seconds:.3f} s): shorter than {min_seconds:g} s, too short to separate",
                        file=path)
    if non_finite:
        raise DataError(f"{non_finite} NaN or infinite samples (nothing computed from this file would be "
                        "finite)", file=path)
    if not audible:
        raise DataError(f"silent: every one of its {frames} samples is zero, nothing to separate", file=path)
    return Recording(path, info.samplerate, info.channels, frames, info.format, info.subtype)


def read_blocks(recording: Recording, *, mono: bool = False, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """The recording as float32 `(channels, frames)` blocks, in order (with `mono`: `(1, frames)`, the mean
    over channels as `read_audio` and librosa take it; blocks change nothing of it). A file that no
    longer decodes to what `probe_recording` found is a DataError naming it."""
    frames = 0
    try:
        with sf.SoundFile(str(recording.path)) as audio:
            for block in audio.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                frames += block.shape[0]
                if mono and block.shape[1] > 1:
                    yield np.mean(block, axis=1, dtype=np.float32)[None]
                else:
                    yield np.ascontiguousarray(block.T)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(read_failure(recording.path, exc), file=recording.path) from None
    if frames != recording.frames:
        raise DataError(f"decoded {frames} frames where it held {recording.frames} moments ago: the file changed "
                        "while it was separated", file=recording.path)


def read_recording(recording: Recording, *, mono: bool = False) -> np.ndarray:
    """The whole recording as one float32 `(channels, frames)` array (`read_blocks`' samples)."""
    return np.concatenate(list(read_blocks(recording, mono=mono)), axis=1)


# Output containers and their sample formats: 32-bit float WAV keeps estimates exact; FLAC stores integers.
AUDIO_OUTPUT_FORMATS = {"wav": ("WAV", "FLOAT", ".wav"), "flac": ("FLAC", "PCM_24", ".flac")}


def output_format(name: str, *, pcm16: bool = False) -> tuple[str, str, str]:
    """(libsndfile format, subtype, file suffix) of an output format name (`wav`, `flac`); `pcm16`: 16-bit
    integers instead of 32-bit float (WAV) or 24-bit integers (FLAC)."""
    if name not in AUDIO_OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {name!r} (use {' or '.join(AUDIO_OUTPUT_FORMATS)})")
    container, subtype, suffix = AUDIO_OUTPUT_FORMATS[name]
    return container, "PCM_16" if pcm16 else subtype, suffix


class AudioWriter:
    """An audio file written block by block and renamed into place only by `commit()` (`abort()` or an
    error leaves no trace, and whatever was at the path stays): `dcase9.files.atomic_output`.

        with AudioWriter(path, 44100, 2, "WAV", "FLOAT") as writer:
            writer.write(block)            # (channels, frames)
            writer.commit()

    Integer subtypes clip samples beyond [-1, 1] (libsndfile's clipping is on). `before_replace`: see
    `atomic_output` (a ledger records the finished file there)."""

    def __init__(self, path: str | Path, sample_rate: int, channels: int, container: str, subtype: str, *,
                 before_replace: Callable[[Path], None] | None = None):
        self.path = Path(path)
        self.channels = channels
        self.frames = 0
        self._open = True
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_output(self.path, before_replace))
        try:
            self._file = self._stack.enter_context(sf.SoundFile(str(tmp), "w", samplerate=sample_rate,
                                                                channels=channels, subtype=subtype,
                                                                format=container))
        except BaseException:
            self._stack.close()
            raise

    def write(self, block: np.ndarray) -> None:
        if block.shape[0] != self.channels:
            raise ValueError(f"{self.path}: a block of {block.shape[0]} channels for a file of {self.channels}")
        self._file.write(np.ascontiguousarray(block.T, dtype=np.float32))
        self.frames += block.shape[-1]

    def commit(self) -> None:
        """Close the file and rename it into place."""
        if self._open:
            self._open = False
            self._stack.close()

    def abort(self) -> None:
        """Remove what was written; the path keeps what it had."""
        if self._open:
            self._open = False
            self._stack.__exit__(_Aborted, _Aborted(), None)

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.abort()  # not committed by the block (an error, or it chose not to): nothing is renamed into place


class _Aborted(BaseException):
    """Thrown into an `AudioWriter`'s atomic output to discard it (not an Exception: never taken for a full
    disk)."""
