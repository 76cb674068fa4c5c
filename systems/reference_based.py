"""Two systems that check the pipeline end to end without any model.

- `mixture` returns its input: SDRi is exactly 0 dB by definition (the lower anchor).
- `oracle` applies the ideal ratio mask computed from the reference: an upper bound for
  time-frequency masking systems, and proof that estimates reach `score` under the right ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dcase9.systems.base import BuildContext, SystemSpec


class MixtureSeparator(nn.Module):
    """Identity: the 'separated' signal is the mixture."""

    queried = False

    def __init__(self, sample_rate: int):
        super().__init__()
        self.sample_rate = sample_rate

    def encode_queries(self, queries: Sequence[str]) -> torch.Tensor | None:
        return None

    def separate(self, mixture: torch.Tensor, conditions: torch.Tensor | None,
                 reference: torch.Tensor | None = None) -> torch.Tensor:
        return mixture


class OracleMaskSeparator(nn.Module):
    """Ideal ratio mask sqrt(|S|^2 / (|S|^2 + |N|^2)) on the mixture STFT, with N = mixture - S."""

    queried = False

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop_length: int = 256):
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft, self.hop_length = n_fft, hop_length

    def encode_queries(self, queries: Sequence[str]) -> torch.Tensor | None:
        return None

    def separate(self, mixture: torch.Tensor, conditions: torch.Tensor | None,
                 reference: torch.Tensor | None = None) -> torch.Tensor:
        if reference is None:
            raise ValueError("the oracle needs the reference signals")
        length = mixture.shape[-1]
        n_fft = min(self.n_fft, 2 ** max(4, (length - 1).bit_length() - 1))  # short inputs: smaller frames
        hop = min(self.hop_length, n_fft // 4)
        window = torch.hann_window(n_fft, device=mixture.device)

        def stft(x: torch.Tensor) -> torch.Tensor:
            return torch.stft(x.float(), n_fft, hop, window=window, center=True, return_complex=True)

        mix_spec, target_spec = stft(mixture), stft(reference)
        target_power = target_spec.abs() ** 2
        noise_power = (mix_spec - target_spec).abs() ** 2
        mask = torch.sqrt(target_power / (target_power + noise_power).clamp_min(1e-20))
        return torch.istft(mix_spec * mask, n_fft, hop, window=window, center=True, length=length)


def build_mixture(spec: SystemSpec, context: BuildContext) -> MixtureSeparator:
    return MixtureSeparator(spec.sample_rate)


def build_oracle(spec: SystemSpec, context: BuildContext) -> OracleMaskSeparator:
    return OracleMaskSeparator(spec.sample_rate)
