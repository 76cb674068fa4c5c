"""Continuing a run of the official training code: `dcase9 train --resume-from REF.ckpt`.

The official baseline (and AudioSep) save Lightning checkpoints with the optimizer's state
(`trainer.save_checkpoint` in `CheckpointEveryNSteps`) and resume them with
`trainer.fit(ckpt_path=...)`. Such a file holds, beside the weights (`state_dict`: `ss_model.*`,
`query_encoder.model.*`, the official layout `--init` reads):

* `global_step` and Lightning's loop progress (`loops`): where the run is;
* `lr_schedulers`: the `LambdaLR` state (`last_epoch` = the step, `base_lrs`, `_last_lr`);
* `optimizer_states`: one AdamW `state_dict()`, built over `ss_model.parameters()`, i.e. every
  parameter of the reference's ResUNet30 in its registration order: torchlibrosa's four STFT/ISTFT
  kernels first (frozen), then the net's 210 (214 for the official net). Its `param_groups[0]
  ["params"]` numbers them 0..213; `state` holds `step`, `exp_avg`, `exp_avg_sq` and
  `max_exp_avg_sq` (amsgrad) for those that ever had a gradient, keyed by that number.

dcase9's AdamW holds only the parameters that train (186 for the official net: the decoder `bn2`
and its FiLM `beta2` that the forward pass never uses are frozen, and the STFT kernels are not
parameters here). So the moments are mapped by tensor: number -> reference name (the model family's
`reference_parameter_names`) -> dcase9's number. Parameters dcase9 does not train got no gradient
in the reference either, so they hold no state there (a state with nonzero moments for one is
refused: that run trained something this one cannot). The rest of the file is restored by
Lightning itself, which upgrades a checkpoint of its 2.0 series on loading: the step counter and
loop progress, the schedule's position, the weights (through the module's `on_load_checkpoint`,
as for `--resume`). The optimizer settings and the schedule are checked against the configuration,
since the run goes on with the file's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dcase9.errors import CheckpointError, ConfigError
from dcase9.models.checkpoints import describe_non_finite, non_finite_keys, read_checkpoint
from dcase9.training.config import TrainConfig
from dcase9.training.schedules import lr_multiplier


@dataclass(frozen=True)
class ReferenceRun:
    """A training checkpoint of the official code, read and checked: `checkpoint` as read, `step` its
    global step."""

    path: Path
    checkpoint: dict[str, Any]
    step: int


def read_reference_run(path: str | Path, *, trust: bool = False) -> ReferenceRun:
    """Read a Lightning training checkpoint to continue, refusing one that cannot be continued: no
    weights or step, no optimizer or schedule state (a weights-only file, such as the published
    checkpoints), several optimizers, or NaN/infinite values."""
    from dcase9.training.module import checkpoint_tensors

    path = Path(path)
    flag = "--resume-from"
    try:
        checkpoint = read_checkpoint(path, trust=trust)
    except CheckpointError as exc:
        raise CheckpointError(f"{flag}: {exc}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict) \
            or not isinstance(checkpoint.get("global_step"), int):
        raise CheckpointError(f"{flag}: {path} is not a Lightning training checkpoint (no state_dict or global_step)")
    optimizers = checkpoint.get("optimizer_states")
    if not optimizers or not any(isinstance(o, dict) and o.get("state") for o in optimizers):
        raise CheckpointError(f"{flag}: {path} holds no optimizer state (a weights-only checkpoint, such as the "
                              "published ones), so no run can continue from it; start a new run from its weights "
                              f"with --init {path}")
    if len(optimizers) != 1 or not isinstance(optimizers[0].get("param_groups"), list):
        raise CheckpointError(f"{flag}: {path} holds {len(optimizers)} optimizer states; the official training "
                              "code has one AdamW")
    schedulers = checkpoint.get("lr_schedulers") or []
    if len(schedulers) != 1 or not isinstance(schedulers[0], dict) or "last_epoch" not in schedulers[0]:
        raise CheckpointError(f"{flag}: {path} holds no learning-rate schedule state (the official training code "
                              "saves one LambdaLR)")
    tensors = checkpoint_tensors(checkpoint)
    broken = non_finite_keys(tensors)
    if broken:
        raise CheckpointError(f"{flag}: {path}: {describe_non_finite(broken, len(tensors))} (weights and optimizer "
                              "state); that run had diverged")
    return ReferenceRun(path, checkpoint, int(checkpoint["global_step"]))


def check_settings(run: ReferenceRun, config: TrainConfig) -> None:
    """Refuse a configuration whose optimizer settings or schedule differ from the run's (the run
    goes on with the file's; the configuration saved with it would otherwise not say what trained),
    or which ends at or before the run's step."""
    group = run.checkpoint["optimizer_states"][0]["param_groups"][0]
    options = config.optimizer
    wanted = {"lr": options.lr, "betas": tuple(options.betas), "eps": options.eps,
              "weight_decay": options.weight_decay, "amsgrad": options.amsgrad}
    saved = {"lr": group.get("initial_lr", run.checkpoint["lr_schedulers"][0].get("base_lrs", [None])[0]),
             "betas": tuple(group.get("betas", ())), "eps": group.get("eps"),
             "weight_decay": group.get("weight_decay"), "amsgrad": group.get("amsgrad")}
    differ = [f"optimizer.{k}: {saved[k]!r} in the file, {wanted[k]!r} configured" for k in wanted
              if not _same(saved[k], wanted[k])]
    schedule = run.checkpoint["lr_schedulers"][0]
    last = schedule.get("_last_lr") or []
    if not differ and last and isinstance(schedule["last_epoch"], int):
        expected = options.lr * lr_multiplier(config.schedule)(schedule["last_epoch"])
        if not _same(last[0], expected):
            differ.append(f"the learning rate at step {schedule['last_epoch']} is {last[0]:g} in the file, "
                          f"{expected:g} by the configured schedule ({config.schedule.kind}, warm_up_steps "
                          f"{config.schedule.warm_up_steps})")
    if differ:
        raise ConfigError(f"--resume-from {run.path}: the run goes on with the file's optimizer and schedule, which "
                          f"differ from the configuration: {'; '.join(differ)}. Set them as that run had them "
                          "(--set optimizer.KEY=VALUE, --set schedule.KEY=VALUE)")
    if config.trainer.max_steps is not None and config.trainer.max_steps <= run.step:
        raise ConfigError(f"--resume-from {run.path}: that run is at step {run.step}; trainer.max_steps "
                          f"({config.trainer.max_steps}) must be more (--steps)")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=0.0)


def map_optimizer_state(state: dict[str, Any], reference_names: list[str], trained: list[tuple[str, torch.Size]],
                        *, source: str) -> dict[str, Any]:
    """The official AdamW's `state_dict()` as dcase9's optimizer holds it: entries moved from the
    reference's numbering (`reference_names`, in the order of its `ss_model.parameters()`) to
    dcase9's (`trained`: name and shape of each parameter dcase9's optimizer holds, in its order)."""
    groups = state.get("param_groups") or []
    if len(groups) != 1:
        raise CheckpointError(f"{source}: the optimizer has {len(groups)} parameter groups; the official AdamW has one")
    group = groups[0]
    numbers = list(group.get("params") or [])
    if len(numbers) != len(reference_names):
        raise CheckpointError(f"{source}: its optimizer holds {len(numbers)} tensors, where the official training "
                              f"code's AdamW over ss_model holds {len(reference_names)} for this net: a checkpoint of "
                              "another net or of other training code")
    by_name = dict(zip(reference_names, numbers, strict=True))
    entries = state.get("state") or {}
    trained_names = {name for name, _ in trained}
    for name, number in by_name.items():
        moment = (entries.get(number) or {}).get("exp_avg")
        if name not in trained_names and isinstance(moment, torch.Tensor) and bool(moment.ne(0).any()):
            raise CheckpointError(f"{source}: the run it comes from trained ss_model.{name}, which this one keeps "
                                  "frozen; it cannot be continued here")
    mapped: dict[int, Any] = {}
    for index, (name, shape) in enumerate(trained):
        values = entries.get(by_name[name])
        if values is None:
            raise CheckpointError(f"{source}: no optimizer state for ss_model.{name}, which this run trains")
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != shape:
                raise CheckpointError(f"{source}: optimizer state {key} of ss_model.{name} has shape "
                                      f"{tuple(value.shape)}, the parameter {tuple(shape)}")
        mapped[index] = values
    return {"state": mapped, "param_groups": [{**group, "params": list(range(len(trained)))}]}


def continued_checkpoint(run: ReferenceRun, reference_names: list[str],
                         trained: list[tuple[str, torch.Size]]) -> dict[str, Any]:
    """The run's checkpoint with its optimizer state in dcase9's numbering: what Lightning restores
    (weights, step, loop progress, schedule, optimizer) to continue it."""
    optimizer = map_optimizer_state(run.checkpoint["optimizer_states"][0], reference_names, trained,
                                    source=f"--resume-from {run.path}")
    return {**run.checkpoint, "optimizer_states": [optimizer]}
