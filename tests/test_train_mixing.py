"""The training mixer against a direct transcription of the baseline's SegmentMixer, and the LR schedules."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from dcase9.training.config import ScheduleConfig
from dcase9.training.mixing import MixPlan, SegmentMixer, step_seed
from dcase9.training.schedules import lr_multiplier


def reference_segment_mixer(waveforms: torch.Tensor, max_mix_num: int, lower_db: int, higher_db: int,
                            randint: Callable[[int, int], int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The recipe of the baseline's data/waveform_mixers.py, written out operation by operation on
    (batch, 1, samples) waveforms; `randint` stands in for Python's random.randint."""

    def dynamic_loudnorm(audio: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        energy1 = torch.mean(audio ** 2)
        energy2 = max(torch.mean(reference ** 2), 1e-10)
        ratio = torch.clamp((energy1 / energy2) ** 0.5, 0.02, 50)
        rescaled = audio / ratio
        gain = np.power(10.0, randint(lower_db, higher_db) / 20.0)
        return gain * rescaled

    batch = waveforms.shape[0]
    mixtures, segments = [], []
    for n in range(batch):
        segment = waveforms[n].clone()
        noise = torch.zeros_like(segment)
        for i in range(1, randint(2, max_mix_num)):
            noise += dynamic_loudnorm(waveforms[(n + i) % batch], segment)
        noise = dynamic_loudnorm(noise, segment)
        mixture = segment + noise
        peak = torch.max(torch.abs(mixture))
        if peak > 1:
            segment *= 0.9 / peak
            mixture *= 0.9 / peak
        segments.append(segment)
        mixtures.append(mixture)
    return torch.stack(mixtures), torch.stack(segments)


def scripted(values: list[int]) -> Callable[[int, int], int]:
    stream: Iterator[int] = iter(values)

    def randint(low: int, high: int) -> int:
        value = next(stream)
        assert low <= value <= high, (low, value, high)
        return value

    return randint


def batch_of_clips(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    scales = torch.tensor([0.05, 0.9, 0.3, 1e-4, 0.6, 0.0, 0.2, 0.8][:batch])[:, None]
    clips = scales * torch.randn(batch, samples, generator=generator)
    clips[1] *= 3.0  # loud enough that mixtures clip and get declipped
    return clips


@pytest.mark.parametrize("max_mix_num", [2, 3])
def test_mixer_equals_the_transcribed_recipe(max_mix_num: int) -> None:
    mixer = SegmentMixer(max_mix_num=max_mix_num, lower_db=-10, higher_db=10)
    clips = batch_of_clips(8, 4000)
    plan = mixer.plan(8, torch.Generator().manual_seed(3))
    draws = [value for gains in plan.gains_db for value in (len(gains), *gains)]
    mixtures, targets = mixer.mix(clips, plan)
    expected_mixtures, expected_targets = reference_segment_mixer(clips[:, None, :], max_mix_num, -10, 10,
                                                                  scripted(draws))
    assert torch.equal(mixtures, expected_mixtures[:, 0]) and torch.equal(targets, expected_targets[:, 0])
    # The cases the recipe has to handle did occur: declipping, a silent clip, clamped ratios.
    assert (mixtures.abs().amax(dim=1) <= 0.9 + 1e-6).all()
    assert not torch.equal(targets, clips)
    if max_mix_num == 3:
        assert set(plan.sources) == {2, 3}


def test_mixture_is_target_plus_gain_scaled_neighbour() -> None:
    """One case worked by hand: 0 dB gains, equal energies, no clipping."""
    clips = torch.stack([0.1 * torch.ones(100), -0.1 * torch.ones(100), 0.2 * torch.ones(100)])
    mixtures, targets = SegmentMixer().mix(clips, MixPlan(((0, 0), (6, 0), (0, -6))))
    assert torch.allclose(targets, clips)
    assert torch.allclose(mixtures[0], 0.1 + (-0.1) * torch.ones(100))  # neighbour 1, same energy
    # item 1: neighbour 2 matched to energy 0.01, +6 dB, then the sum matched again at 0 dB
    assert torch.allclose(mixtures[1], -0.1 + 0.1 * torch.ones(100), atol=1e-7)
    # item 2: neighbour 0 matched to 0.2, then -6 dB on the sum
    assert torch.allclose(mixtures[2], 0.2 + 0.2 * 10 ** (-6 / 20) * torch.ones(100), atol=1e-6)


def test_plan_draws_the_configured_range_reproducibly() -> None:
    mixer = SegmentMixer(max_mix_num=2, lower_db=-10, higher_db=10)
    plans = [mixer.plan(16, torch.Generator().manual_seed(step_seed(1234, step, 0))) for step in range(200)]
    gains = [g for plan in plans for gains in plan.gains_db for g in gains]
    assert min(gains) == -10 and max(gains) == 10 and set(gains) == set(range(-10, 11))
    assert all(plan.sources == (2,) * 16 for plan in plans)
    again = mixer.plan(16, torch.Generator().manual_seed(step_seed(1234, 5, 0)))
    assert again == plans[5] and plans[5] != plans[6]
    assert step_seed(1234, 5, 0) != step_seed(1234, 5, 1)


def test_mixer_refuses_what_the_recipe_cannot_do() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        SegmentMixer(max_mix_num=1)
    with pytest.raises(ValueError, match="at least 2 clips"):
        SegmentMixer().mix(torch.zeros(1, 10), MixPlan(((0, 0),)))


def test_constant_warm_up_matches_the_reference_steps() -> None:
    multiplier = lr_multiplier(ScheduleConfig(kind="constant_warm_up", warm_up_steps=10000))
    assert [multiplier(s) for s in (0, 9999, 10000, 19999, 20000, 29999, 30000, 10**6)] == \
        [0.001, 0.001, 0.01, 0.01, 0.1, 0.1, 1.0, 1.0]
    assert lr_multiplier(ScheduleConfig(kind="constant_warm_up", warm_up_steps=0))(0) == 1.0


def test_linear_warm_up_and_constant() -> None:
    multiplier = lr_multiplier(ScheduleConfig(kind="linear_warm_up", warm_up_steps=100, reduce_lr_steps=1000))
    assert multiplier(0) == 0.0 and multiplier(50) == 0.5 and multiplier(100) == 1.0
    assert multiplier(1500) == pytest.approx(0.9) and multiplier(2000) == pytest.approx(0.81)
    assert lr_multiplier(ScheduleConfig(kind="constant"))(12345) == 1.0


def test_lambda_lr_applies_the_multiplier_per_optimizer_step() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(ScheduleConfig(warm_up_steps=2)))
    seen = []
    for _ in range(7):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([1e-6, 1e-6, 1e-5, 1e-5, 1e-4, 1e-4, 1e-3])
    assert scheduler.state_dict()["lr_lambdas"] == [{"warm_up_steps": 2}]
