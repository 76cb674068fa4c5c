"""Training mixtures, made from a batch of clean clips exactly as the baseline's SegmentMixer makes them.

For batch item n (the target), with B items in the batch:

1. the number of sources is drawn, an integer in [2, max_mix_num] (always 2 in the baseline);
2. each interferer i = 1 .. sources-1 is batch item (n + i) % B, its energy matched to the target's
   (`x / clamp(sqrt(mean(x^2) / max(mean(t^2), 1e-10)), 0.02, 50)`), then scaled by a random
   integer gain in [lower_db, higher_db] dB; the interferers are summed;
3. the sum is energy-matched to the target again and scaled by another random integer gain;
4. mixture = target + interferers; if the mixture peaks above 1, mixture AND target are scaled by
   0.9 / peak (the target stays the exact clean part of the mixture).

Energies are means over the whole segment, in float32 on the batch's device, with the same
operations (and so the same float32 results) as the reference. The random integers come from a
`torch.Generator` the caller seeds (the training loop seeds it from the run seed, the global step
and the process rank, so that runs and resumed runs are reproducible); the reference uses
Python's `random`, re-seeded with the batch index at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ENERGY_FLOOR = 1e-10
RATIO_MIN, RATIO_MAX = 0.02, 50.0
DECLIP_PEAK = 0.9


@dataclass(frozen=True)
class MixPlan:
    """The random choices for one batch: per item, one gain (dB) per interferer, then one for their sum."""

    gains_db: tuple[tuple[int, ...], ...]

    @property
    def sources(self) -> tuple[int, ...]:
        """Sources per mixture, target included."""
        return tuple(len(gains) for gains in self.gains_db)


def match_energy(audio: Tensor, reference: Tensor) -> Tensor:
    """`audio` rescaled to the mean energy of `reference` (ratio clamped to [0.02, 50])."""
    energy = torch.mean(audio ** 2)
    reference_energy = torch.clamp(torch.mean(reference ** 2), min=ENERGY_FLOOR)
    ratio = torch.clamp((energy / reference_energy) ** 0.5, RATIO_MIN, RATIO_MAX)
    return audio / ratio


def db_to_gain(db: int) -> float:
    return float(10.0 ** (db / 20.0))


class SegmentMixer:
    """Mixtures and targets from a `(batch, samples)` batch of clean segments; see the module docstring."""

    def __init__(self, max_mix_num: int = 2, lower_db: int = -10, higher_db: int = 10) -> None:
        if max_mix_num < 2:
            raise ValueError(f"max_mix_num must be at least 2 (a target and an interferer), got {max_mix_num}")
        if lower_db > higher_db:
            raise ValueError(f"lower_db ({lower_db}) is above higher_db ({higher_db})")
        self.max_mix_num, self.lower_db, self.higher_db = max_mix_num, lower_db, higher_db

    def plan(self, batch_size: int, generator: torch.Generator) -> MixPlan:
        """Draw the batch's random integers, in the reference's order (count, then each gain, per item)."""

        def integer(low: int, high: int) -> int:  # inclusive, as random.randint
            return int(torch.randint(low, high + 1, (1,), generator=generator))

        gains = []
        for _ in range(batch_size):
            sources = integer(2, self.max_mix_num)
            gains.append(tuple(integer(self.lower_db, self.higher_db) for _ in range(sources)))
        return MixPlan(tuple(gains))

    def mix(self, segments: Tensor, plan: MixPlan) -> tuple[Tensor, Tensor]:
        """`(mixtures, targets)`, both `(batch, samples)`, for the given random choices."""
        if segments.dim() != 2:
            raise ValueError(f"segments must be (batch, samples), got {tuple(segments.shape)}")
        batch = segments.shape[0]
        if len(plan.gains_db) != batch:
            raise ValueError(f"the plan is for {len(plan.gains_db)} items, the batch has {batch}")
        if batch < 2:
            raise ValueError("mixing needs at least 2 clips per batch (the interferer is a batch neighbour)")
        mixtures, targets = [], []
        for n, gains in enumerate(plan.gains_db):
            target = segments[n].clone()
            interference = torch.zeros_like(target)
            for i, gain_db in enumerate(gains[:-1], start=1):
                interference += db_to_gain(gain_db) * match_energy(segments[(n + i) % batch], target)
            interference = db_to_gain(gains[-1]) * match_energy(interference, target)
            mixture = target + interference
            peak = torch.max(torch.abs(mixture))
            if peak > 1:
                target *= DECLIP_PEAK / peak
                mixture *= DECLIP_PEAK / peak
            mixtures.append(mixture)
            targets.append(target)
        return torch.stack(mixtures), torch.stack(targets)

    def __call__(self, segments: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.mix(segments, self.plan(segments.shape[0], generator))


MIXING_STREAM = 0
DROPOUT_STREAM = 1  # the query encoder's dropout (query_encoder.training_dropout)


def step_seed(run_seed: int, step: int, rank: int, stream: int = MIXING_STREAM) -> int:
    """A 63-bit seed for one training step of one process and one use of random numbers (`stream`),
    SplitMix64 of the four numbers (stream 0, the mixing, is the mix of the first three alone)."""
    value = (run_seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + rank * 0x94D049BB133111EB
             + stream * 0xD1B54A32D192ED03) & (2**64 - 1)
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & (2**64 - 1)
    value ^= value >> 31
    return value & (2**63 - 1)
