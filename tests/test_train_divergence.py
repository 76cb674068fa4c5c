"""A training run that diverges stops (exit 1) naming the step and the last good checkpoint, and no
checkpoint on disk is ever replaced by a broken one (issue 21). The command-line cases are in
test_hostile.py; these need a hook into the run: a NaN loss at a chosen step of a resumed run, and
weights that turn NaN after a step whose loss was finite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("lightning")

from tests.test_train_run import TINY_RUN  # noqa: E402
from dcase9.cli import app  # noqa: E402
from dcase9.models.checkpoints import non_finite_keys  # noqa: E402
from dcase9.training.models import ResUNet30Model  # noqa: E402
from dcase9.training.module import checkpoint_tensors  # noqa: E402

runner = CliRunner()


@pytest.fixture()
def run_args(demo_root: Path, tmp_path: Path) -> list[str]:
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({**TINY_RUN, "validation": {"data": None}}))  # JSON is YAML
    return ["train", "--preset", "demo", "--config", str(config), "--data", str(demo_root / "train" / "train.json"),
            "--out", str(tmp_path / "run")]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.ckpt"))}


def test_a_nan_loss_leaves_every_checkpoint_byte_for_byte(run_args: list[str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, [*run_args, "--steps", "2"])
    assert result.exit_code == 0, result.output
    before = files_of(run)
    assert set(before) == {"last.ckpt", "checkpoints/step=2.ckpt"}

    original = ResUNet30Model.training_loss

    def nan_loss(self: ResUNet30Model, *args: Any) -> Any:
        loss, parts = original(self, *args)
        return loss * float("nan"), parts

    monkeypatch.setattr(ResUNet30Model, "training_loss", nan_loss)
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "4"])
    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert (f"training diverged at step 3: the loss is nan. The run stopped without saving it; the last good "
            f"checkpoint is {run / 'last.ckpt'} (step 2), left as it was") in output
    assert "separate with" not in output and "dcase9 infer" not in output and "Traceback" not in output
    assert files_of(run) == before  # no step=4.ckpt, and last.ckpt and step=2.ckpt as they were
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged"] == {"step": 3, "reason": "the loss is nan"}
    assert summary["infer_command"] == "" and summary["last_checkpoint_step"] == 2 and summary["global_step"] == 2
    assert "diverged at step 3" in summary["no_infer_command"] and summary["start_step"] == 2


def test_weights_that_turn_nan_after_a_finite_loss_are_never_saved(run_args: list[str], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    original = ResUNet30Model.training_loss
    calls = []

    def nan_gradient_at_step_2(self: ResUNet30Model, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # this step's loss is finite; its optimizer step makes a weight NaN
            next(self.trainable_parameters()).register_hook(lambda grad: grad * float("nan"))
        return original(self, *args)

    monkeypatch.setattr(ResUNet30Model, "training_loss", nan_gradient_at_step_2)
    run = tmp_path / "run"
    result = runner.invoke(app, [*run_args, "--steps", "3"])  # step=2.ckpt is due after step 2
    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    # The weight and its Adam moments (the preset uses amsgrad: three of them), named.
    assert "training diverged at step 2: after it, 4 of" in output
    assert "values (ss_model.base.bn0.weight, optimizer_states[0].state[0].exp_avg, " in output
    assert f"the last good checkpoint is {run / 'last.ckpt'} (step 1)" in output
    assert sorted(files_of(run)) == ["last.ckpt"]
    saved = torch.load(run / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 1 and non_finite_keys(checkpoint_tensors(saved)) == []
