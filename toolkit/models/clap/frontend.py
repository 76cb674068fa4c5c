"""laion HTSAT's audio front end in torch: the log-mel spectrogram it computes inside the model, the
clip handling of its inputs (repeat-padding, consecutive clips), and the check that a checkpoint's
stored front end matches ours."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dcase9.errors import CheckpointError

# laion's HTSAT front end constants (htsat.py: ref=1.0, amin=1e-10, top_db=None).
_LOG_AMIN = 1e-10


@dataclass(frozen=True)
class LogMelSettings:
    """The waveform front end laion's HTSAT computes internally, and the clip length it expects."""

    sample_rate: int = 48_000
    clip_samples: int = 480_000
    window_size: int = 1024  # n_fft and Hann window length
    hop_size: int = 480
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 14_000.0

    @property
    def n_frames(self) -> int:
        """STFT frames of one clip (centred frames: one per hop, plus one)."""
        return self.clip_samples // self.hop_size + 1


def _hz_to_slaney_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    linear = hz / (200.0 / 3.0)
    log_step = math.log(6.4) / 27.0
    logarithmic = 15.0 + torch.log(torch.clamp(hz, min=1e-10) / 1000.0) / log_step
    return torch.where(hz >= 1000.0, logarithmic, linear)


def _slaney_mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    log_step = math.log(6.4) / 27.0
    return torch.where(mel >= 15.0, 1000.0 * torch.exp(log_step * (mel - 15.0)), mel * (200.0 / 3.0))


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float,
                          fmax: float) -> torch.Tensor:
    """Triangular mel filters, Slaney scale and area normalisation, as `(n_fft // 2 + 1, n_mels)`.

    The same filters as `librosa.filters.mel(htk=False, norm='slaney')` (what torchlibrosa's
    LogmelFilterBank uses), computed in float64 and returned as float32.
    """
    fft_hz = torch.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(float(_hz_to_slaney_mel(torch.tensor(float(fmin), dtype=torch.float64))),
                               float(_hz_to_slaney_mel(torch.tensor(float(fmax), dtype=torch.float64))),
                               n_mels + 2, dtype=torch.float64)
    hz_edges = _slaney_mel_to_hz(mel_edges)
    widths = hz_edges[1:] - hz_edges[:-1]
    distance = hz_edges[:, None] - fft_hz[None, :]  # (n_mels + 2, n_freqs)
    rising = -distance[:-2] / widths[:-1, None]
    falling = distance[2:] / widths[1:, None]
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)
    filters = filters * (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]  # equal area per filter
    return filters.T.to(torch.float32).contiguous()


class HtsatLogMel(nn.Module):
    """`(batch, samples)` waveforms -> `(batch, 1, frames, n_mels)` log-mel, as laion's HTSAT computes it.

    torchlibrosa's Spectrogram (periodic Hann window of n_fft samples, centred frames with
    reflect padding, |STFT|^2) then LogmelFilterBank (Slaney filters, 10 log10(max(x, 1e-10)),
    ref 1.0, no top_db clipping).
    """

    def __init__(self, settings: LogMelSettings):
        super().__init__()
        self.settings = settings
        self.register_buffer("window", torch.hann_window(settings.window_size, periodic=True,
                                                         dtype=torch.float32), persistent=False)
        self.register_buffer("mel_filters", slaney_mel_filterbank(
            settings.sample_rate, settings.window_size, settings.n_mels, settings.fmin, settings.fmax),
            persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        s = self.settings
        spectrum = torch.stft(waveforms.float(), n_fft=s.window_size, hop_length=s.hop_size,
                              win_length=s.window_size, window=self.window, center=True,
                              pad_mode="reflect", return_complex=True)
        power = spectrum.real.square() + spectrum.imag.square()  # (batch, freqs, frames)
        mel = torch.matmul(power.transpose(1, 2), self.mel_filters)  # (batch, frames, n_mels)
        return (10.0 * torch.log10(torch.clamp(mel, min=_LOG_AMIN))).unsqueeze(1)


def repeat_pad(waveforms: torch.Tensor, length: int) -> torch.Tensor:
    """laion's `repeatpad` for `(batch, samples)` shorter than `length`: tile the signal a whole
    number of times (floor(length / samples)), then zero-pad the rest."""
    samples = waveforms.shape[-1]
    if samples >= length:
        return waveforms
    tiled = waveforms.repeat(1, length // samples)
    return F.pad(tiled, (0, length - tiled.shape[-1]))


def clip_starts(samples: int, clip_samples: int) -> list[int]:
    """Start offsets of the clips a signal longer than one clip is cut into: 0, L, 2L, ...,
    with the last clip aligned to the end (overlapping its predecessor when needed)."""
    count = max(1, math.ceil(samples / clip_samples))
    return [i * clip_samples for i in range(count - 1)] + [max(0, samples - clip_samples)]


def check_front_end(laion: Mapping[str, torch.Tensor], front_end: LogMelSettings, *, source: str,
                    tolerance: float = 1e-6) -> None:
    """Refuse a checkpoint whose stored torchlibrosa front end does not match `front_end`.

    laion files carry the STFT kernels (their shape gives n_fft) and the mel filters; comparing
    them with ours catches a wrong sample rate, n_fft, n_mels, fmin or fmax. Absent keys are fine.
    """
    kernel = laion.get("audio_branch.spectrogram_extractor.stft.conv_real.weight")
    if kernel is not None and tuple(kernel.shape) != (front_end.window_size // 2 + 1, 1, front_end.window_size):
        raise CheckpointError(f"{source}: its STFT kernels {tuple(kernel.shape)} are for n_fft={kernel.shape[-1]}, "
                              f"the CLAP spec says window_size={front_end.window_size}")
    stored = laion.get("audio_branch.logmel_extractor.melW")
    if stored is None:
        return
    ours = slaney_mel_filterbank(front_end.sample_rate, front_end.window_size, front_end.n_mels,
                                 front_end.fmin, front_end.fmax)
    if tuple(stored.shape) != tuple(ours.shape):
        raise CheckpointError(f"{source}: its mel filters have shape {tuple(stored.shape)}, the CLAP spec gives "
                              f"{tuple(ours.shape)} (window_size {front_end.window_size}, n_mels {front_end.n_mels})")
    error = float((stored.float() - ours).abs().max())
    if error > tolerance:
        raise CheckpointError(
            f"{source}: its mel filters differ from ours by up to {error:.3g}: the checkpoint was made for "
            f"other front-end settings than {front_end} (sample rate, fmin or fmax)")
