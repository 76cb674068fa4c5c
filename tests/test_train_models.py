"""The trainable-model contract, with a second model family shaped like System 3 (IRM-LDM): a net
saved under a dotted prefix, frozen pretrained parts left out of checkpoints, a loss that reads the
captions, and options validated under `model:`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor, nn

from dcase9.config import StrictModel
from dcase9.errors import ConfigError
from dcase9.models.checkpoints import read_checkpoint
from dcase9.training.config import assemble_config
from dcase9.training.models import ModelContext, ModelKind, TrainableModel, model_kind_names, register_model_kind


class GainMaskOptions(StrictModel):
    hidden: int = 8


class FrozenCodec(nn.Module):
    """Stands in for a pretrained VAE: a batch norm whose statistics must not move in training."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x[:, None, :])[:, 0, :]


class GainMask(TrainableModel):
    state_prefix = "ss_model.mask_net."
    seen: list[tuple[bool, tuple[str, ...]]] = []

    def __init__(self, options: GainMaskOptions, context: ModelContext) -> None:
        net = nn.Sequential(nn.Linear(512, options.hidden), nn.Tanh(), nn.Linear(options.hidden, 1))
        super().__init__(net, context.sample_rate, frozen=nn.ModuleDict({"codec": FrozenCodec()}))

    def separate(self, mixture: Tensor, condition: Tensor) -> Tensor:
        assert self.frozen is not None
        return self.frozen["codec"](mixture) * torch.sigmoid(self.net(condition))

    def training_loss(self, mixture: Tensor, condition: Tensor, target: Tensor,
                      captions: Sequence[str]) -> tuple[Tensor, dict[str, Any]]:
        assert self.frozen is not None
        GainMask.seen.append((self.frozen.training, tuple(captions)))
        loss = self.loss(self.separate(mixture, condition), target)
        return loss, {"extra": float(loss.detach()) * 0.5}


@pytest.fixture(scope="module", autouse=True)
def gain_mask_kind() -> None:
    if "gain-mask" not in model_kind_names():
        register_model_kind("gain-mask", ModelKind(options=GainMaskOptions, build=GainMask,
                                                   description="test family", default_loss="mse_wav"))


def test_a_second_family_trains_saves_and_resumes(demo_root: Path, tmp_path: Path) -> None:
    from tests.test_train_run import TINY_RUN
    from dcase9.training import train

    layers = {**TINY_RUN, "model": {"kind": "gain-mask", "hidden": 4}, "system": None,
              "data": {**TINY_RUN["data"], "datafiles": [str(demo_root / "train" / "train.json")]},
              "validation": {"data": str(demo_root / "validation"), "every_steps": 2, "limit": 2, "batch_size": 2,
                             "sanity_steps": 0},
              "trainer": {**TINY_RUN["trainer"], "max_steps": 2}}
    config = assemble_config(preset="demo", overrides=[layers])
    GainMask.seen.clear()
    result = train(config, tmp_path / "run", progress=False)
    assert result.global_step == 2 and "val/sdri" in result.validation
    # No system facts and a configuration that names no system: no command, and the result says why.
    assert result.infer_command == "" and "names no system" in result.no_infer_command
    assert all(not frozen_training for frozen_training, _ in GainMask.seen)  # frozen parts stayed in eval mode
    assert all(len(captions) == 2 and all(isinstance(c, str) for c in captions) for _, captions in GainMask.seen)
    state = read_checkpoint(tmp_path / "run" / "last.ckpt")["state_dict"]
    assert {k for k in state if k.startswith("ss_model.")} == {
        "ss_model.mask_net.0.weight", "ss_model.mask_net.0.bias", "ss_model.mask_net.2.weight",
        "ss_model.mask_net.2.bias"}
    assert not any(k.startswith("frozen_parts.") for k in state)  # pretrained parts come from their own files
    assert any(k.startswith("query_encoder.model.text_branch.") for k in state)
    metrics = next((tmp_path / "run" / "logs").glob("version_0/metrics.csv")).read_text()
    assert "train/extra" in metrics

    resumed = train(assemble_config(base=yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()),
                                    overrides=[{"trainer": {"max_steps": 3}}]), tmp_path / "run", resume=True,
                    progress=False)
    assert (resumed.start_step, resumed.global_step, resumed.steps_this_run) == (2, 3, 1)
    assert resumed.describe_steps().startswith("1 step in ") and resumed.describe_steps().endswith(
        ", from step 2 to 3")


def test_a_family_validates_its_own_options() -> None:
    with pytest.raises(ConfigError, match="model.width: unknown key"):
        assemble_config(overrides=[{"model": {"kind": "gain-mask", "width": 3}}])
    assert assemble_config(overrides=[{"model": {"kind": "gain-mask"}}]).model_options() == GainMaskOptions()
    assert assemble_config(overrides=[{"model": {"kind": "gain-mask"}}]).model.kind == "gain-mask"
