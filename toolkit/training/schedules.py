"""Learning-rate multipliers per optimizer step, as the baseline's `optimizers/lr_schedulers.py` defines them.

Used through `torch.optim.lr_scheduler.LambdaLR`, stepped once per optimizer step: the step-k
update (k = 0, 1, ...) uses `lr * multiplier(k)`.

- `constant_warm_up` (the baseline's): x0.001 for k < W, x0.01 for W <= k < 2W, x0.1 for
  2W <= k < 3W, then x1 (W = warm_up_steps; W = 0 means x1 from the start).
- `linear_warm_up`: k / W up to and including k = W, then x0.9 every `reduce_lr_steps` steps.
- `constant`: x1.

They are small classes rather than functions so that LambdaLR stores their settings (plain ints) in
checkpoints, which then load with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from dcase9.training.config import ScheduleConfig


class ConstantWarmUp:
    def __init__(self, warm_up_steps: int) -> None:
        self.warm_up_steps = int(warm_up_steps)

    def __call__(self, step: int) -> float:
        w = self.warm_up_steps
        if step < w:
            return 0.001
        if step < 2 * w:
            return 0.01
        if step < 3 * w:
            return 0.1
        return 1.0


class LinearWarmUp:
    def __init__(self, warm_up_steps: int, reduce_lr_steps: int) -> None:
        self.warm_up_steps = int(warm_up_steps)
        self.reduce_lr_steps = int(reduce_lr_steps)

    def __call__(self, step: int) -> float:
        if step <= self.warm_up_steps:
            # The reference divides by warm_up_steps; with none, it is x1 (not a division by zero).
            return step / self.warm_up_steps if self.warm_up_steps else 1.0
        return 0.9 ** (step // self.reduce_lr_steps)


class Constant:
    def __call__(self, step: int) -> float:
        return 1.0


def lr_multiplier(config: ScheduleConfig) -> ConstantWarmUp | LinearWarmUp | Constant:
    if config.kind == "constant_warm_up":
        return ConstantWarmUp(config.warm_up_steps)
    if config.kind == "linear_warm_up":
        return LinearWarmUp(config.warm_up_steps, config.reduce_lr_steps)
    return Constant()
