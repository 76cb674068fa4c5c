"""Training as the official code ran it (issue 25): the query encoder's dropout while training,
the float32 layout of training on the CPU, and continuing a run of the official training code."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tests.test_train_run import TINY_RUN
from dcase9.models.clap import ClapArchitecture, ClapEncoder, load_roberta_tokenizer
from dcase9.models.tiny import TINY_CLAP, random_clap_model, write_tiny_roberta_tokenizer
from dcase9.training.config import assemble_config

CAPTIONS = ["a dog barks twice", "rain on a tin roof", "a car horn in traffic"]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> ClapEncoder:
    spec = ClapArchitecture(**TINY_CLAP).spec()
    tokenizer = load_roberta_tokenizer(write_tiny_roberta_tokenizer(tmp_path_factory.mktemp("tok")))
    return ClapEncoder(random_clap_model(spec, seed=3), spec.front_end, tokenizer)


# -- 1. dropout in the query encoder while training ------------------------------------------------


def test_text_dropout_is_per_call_and_the_encoder_stays_in_eval_mode(tiny_encoder: ClapEncoder) -> None:
    text_model = tiny_encoder.model.text_model
    # RoBERTa's rates, as roberta-base (the reference's text branch) has them
    assert {m.p for m in text_model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    plain = tiny_encoder.encode_text(CAPTIONS)
    first = tiny_encoder.encode_text(CAPTIONS, dropout=True)
    second = tiny_encoder.encode_text(CAPTIONS, dropout=True)
    assert not torch.allclose(first, second) and not torch.allclose(first, plain)
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(len(CAPTIONS)))
    assert not tiny_encoder.training and not any(m.training for m in tiny_encoder.modules())
    torch.testing.assert_close(tiny_encoder.encode_text(CAPTIONS), plain, rtol=0, atol=0)
    tiny_encoder.train()  # a module that holds it asks for train mode: the encoder stays in eval mode
    torch.testing.assert_close(tiny_encoder.encode_text(CAPTIONS), plain, rtol=0, atol=0)


def test_the_inference_only_text_tower_refuses_dropout(tiny_encoder: ClapEncoder) -> None:
    from dcase9.models.clap import transformers_to_laion

    laion = transformers_to_laion(tiny_encoder.model.state_dict())
    text_only = ClapEncoder.from_laion_weights(laion, tokenizer=tiny_encoder.tokenizer,
                                               spec=ClapArchitecture(**TINY_CLAP), towers="text")
    torch.testing.assert_close(text_only.encode_text(CAPTIONS), tiny_encoder.encode_text(CAPTIONS))
    with pytest.raises(ValueError, match="no dropout"):
        text_only.encode_text(CAPTIONS, dropout=True)


def training_module(encoder: ClapEncoder, *, dropout: bool, seed: int = 7) -> Any:
    from dcase9.training.models import ModelContext, build_model
    from dcase9.training.module import SeparationTraining

    config = assemble_config(preset="baseline", overrides=[
        {k: v for k, v in TINY_RUN.items() if k in ("data", "model")},
        {"seed": seed, "query_encoder": {"training_dropout": dropout, "architecture": dict(TINY_CLAP)}}])
    model = build_model(config.model.kind, config.model_options(),
                        ModelContext(config.data.sample_rate, lambda name: Path(name)), config.loss)
    return SeparationTraining(config, model, encoder, train_set=None, sampler=None)  # type: ignore[arg-type]


def at_step(module: Any, step: int, rank: int = 0) -> Any:
    module._trainer = SimpleNamespace(global_step=step, global_rank=rank)
    return module


def test_the_baseline_presets_train_with_the_references_dropout(tiny_encoder: ClapEncoder) -> None:
    presets = {name: assemble_config(preset=name).query_encoder.training_dropout
               for name in ("baseline", "system1", "system4", "system4-audiosep", "system3", "demo")}
    assert presets == {"baseline": True, "system1": True, "system4": True, "system4-audiosep": True,
                       "system3": False, "demo": False}
    # a run saved before the setting existed resumes as it was trained: eval-mode conditions
    assert assemble_config(base={"seed": 1}).query_encoder.training_dropout is False

    module = at_step(training_module(tiny_encoder, dropout=True), 0)
    inference = tiny_encoder.encode_text(CAPTIONS)
    rng = torch.get_rng_state()
    step0 = module.training_conditions(CAPTIONS)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random numbers are left as they were
    torch.testing.assert_close(module.training_conditions(CAPTIONS), step0, rtol=0, atol=0)  # reproducible
    assert not torch.allclose(step0, inference)
    step1 = at_step(module, 1).training_conditions(CAPTIONS)
    other_rank = at_step(module, 1, rank=1).training_conditions(CAPTIONS)
    assert not torch.allclose(step1, step0) and not torch.allclose(step1, other_rank)
    # validation (and so inference) computes the conditions in eval mode
    module.train()
    torch.testing.assert_close(module.conditions(CAPTIONS), inference, rtol=0, atol=0)
    assert not tiny_encoder.training

    switched_off = at_step(training_module(tiny_encoder, dropout=False), 1)
    torch.testing.assert_close(switched_off.training_conditions(CAPTIONS), inference, rtol=0, atol=0)



def test_a_saved_demo_run_without_the_new_setting_counts_as_unchanged() -> None:
    from dcase9.demo.model import changed_settings, completed_config
    from dcase9.training.config import config_as_dict

    config = config_as_dict(assemble_config(preset="demo"))
    saved = {**config, "query_encoder": {k: v for k, v in config["query_encoder"].items() if k != "training_dropout"}}
    assert changed_settings(saved, config) == ["query_encoder.training_dropout: None -> False"]
    assert changed_settings(completed_config(saved), config) == []  # it trained that way: reused, not retrained
    assert changed_settings(completed_config({**saved, "seed": 5}), config) == ["seed: 5 -> 0"]

def tiny_run_config(demo_root: Path, steps: int, **layers: Any) -> Any:
    """The tiny net of test_train_run on the baseline preset (the reference's settings)."""
    validation = {**TINY_RUN["validation"], "data": str(demo_root / "validation")}
    base = {**TINY_RUN, "data": {**TINY_RUN["data"], "datafiles": [str(demo_root / "train" / "train.json")]},
            "validation": validation, "trainer": {**TINY_RUN["trainer"], "max_steps": steps, "sync_batchnorm": False},
            "optimizer": {"lr": 3e-3}, "schedule": {"kind": "constant"}}
    return assemble_config(preset="baseline", overrides=[base, layers])


def test_a_run_with_dropout_resumes_exactly_and_differs_from_one_without(demo_root: Path, tmp_path: Path) -> None:
    from dcase9.models.checkpoints import read_checkpoint
    from dcase9.training import train

    def weights(run: Path) -> dict[str, torch.Tensor]:
        state = read_checkpoint(run / "last.ckpt")["state_dict"]
        return {k: v for k, v in state.items() if k.startswith("ss_model.") and v.is_floating_point()}

    config = tiny_run_config(demo_root, 2)
    assert config.query_encoder.training_dropout
    train(config.model_copy(update={"trainer": config.trainer.model_copy(update={"max_steps": 1})}),
          tmp_path / "resumed", progress=False, lightning_info=False)
    train(config, tmp_path / "resumed", resume=True, progress=False, lightning_info=False)
    train(config, tmp_path / "straight", progress=False, lightning_info=False)
    resumed, straight = weights(tmp_path / "resumed"), weights(tmp_path / "straight")
    for key, value in resumed.items():
        torch.testing.assert_close(value, straight[key], rtol=1e-5, atol=1e-6, msg=key)

    off = config.model_copy(update={"query_encoder": config.query_encoder.model_copy(
        update={"training_dropout": False})})
    train(off, tmp_path / "off", progress=False, lightning_info=False)
    without = weights(tmp_path / "off")
    assert any(not torch.allclose(value, without[key]) for key, value in straight.items())


# -- 2. float32 accuracy of training on the CPU ----------------------------------------------------


def test_training_on_the_cpu_keeps_the_references_float32_accuracy_and_inference_its_layout() -> None:
    import copy

    from dcase9.models.resunet import ResUNet30

    torch.manual_seed(0)
    net = ResUNet30(n_fft=512, hop_length=128, channels=[8, 16, 32], pools=[(2, 2)] * 3).train()
    exact = copy.deepcopy(net).double()
    generator = torch.Generator().manual_seed(1)
    mixture, condition = 0.1 * torch.randn(2, 1, 32000, generator=generator), torch.randn(2, 512, generator=generator)
    layouts: list[bool] = []
    net.base.encoder_block1.conv_block1.conv1.register_forward_pre_hook(
        lambda module, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        output, reference = net(mixture, condition), exact(mixture.double(), condition.double())
    assert reference.dtype == torch.float64  # a float64 model computes in float64 throughout
    snr = 10 * torch.log10(reference.square().sum() / (output.double() - reference).square().sum())
    # NCHW train-mode batch norm: 132 dB here; channels-last's float32 statistics gave 102 dB
    assert snr > 120, float(snr)
    net.eval()
    with torch.no_grad():
        net(mixture, condition)
    assert layouts == [False, True]  # training in the reference's layout, inference channels-last as before


# -- 3. continuing a run of the official training code --------------------------------------------


def progress(n: int, *trackers: str) -> dict[str, int]:
    return {tracker: n for tracker in trackers}


def lightning_2_0_loops(step: int) -> dict[str, Any]:
    """Lightning 2.0.0's `loops` entry for a run saved in `on_train_batch_end` at `step` (one optimizer
    step per batch, no validation): `_Loop.state_dict` of its fit loop, the progress trackers as
    `dataclasses.asdict` writes them (batch `completed` is counted after the hook that saves)."""
    batches = {"ready": step, "completed": step - 1, "started": step, "processed": step}
    ready_completed = progress(step, "ready", "completed")
    fit_loop = {
        "state_dict": {},
        "epoch_loop.state_dict": {"_batches_that_stepped": step},
        "epoch_loop.batch_progress": {"total": dict(batches), "current": dict(batches), "is_last_batch": False},
        "epoch_loop.scheduler_progress": {"total": dict(ready_completed), "current": dict(ready_completed)},
        "epoch_loop.automatic_optimization.state_dict": {},
        "epoch_loop.automatic_optimization.optim_progress": {"optimizer": {
            "step": {"total": dict(ready_completed), "current": dict(ready_completed)},
            "zero_grad": {"total": progress(step, "ready", "completed", "started"),
                          "current": progress(step, "ready", "completed", "started")}}},
        "epoch_loop.manual_optimization.state_dict": {},
        "epoch_loop.manual_optimization.optim_step_progress": {"total": progress(0, "ready", "completed"),
                                                                "current": progress(0, "ready", "completed")},
        "epoch_loop.val_loop.state_dict": {},
        "epoch_loop.val_loop.batch_progress": {"total": progress(0, "ready", "completed", "started", "processed"),
                                               "current": progress(0, "ready", "completed", "started", "processed"),
                                               "is_last_batch": False},
        "epoch_progress": {"total": progress(0, "ready", "completed", "started", "processed"),
                           "current": progress(0, "ready", "completed", "started", "processed")},
    }
    return {"fit_loop": fit_loop, "validate_loop": {"state_dict": {}}, "test_loop": {"state_dict": {}},
            "predict_loop": {"state_dict": {}}}


def reference_layout_checkpoint(ours: Path, path: Path, net: Any) -> Path:
    """A dcase9 checkpoint rewritten as the official training code (AudioSep's LightningModule under
    Lightning 2.0.0, torch 1.13) would have saved the same state: `state_dict` in its module order
    (torchlibrosa's STFT tensors first), its AdamW over all of `ss_model.parameters()` (the STFT
    kernels, then the net's 210 or here fewer), `param_groups` with torch 1.13's keys, a LambdaLR
    state, Lightning 2.0.0's loops, no dcase9 entry."""
    from dcase9.models.checkpoints import read_checkpoint
    from dcase9.training.models import REFERENCE_STFT_PARAMETERS, unused_resunet_parameters

    saved = read_checkpoint(ours)
    state = saved["state_dict"]
    stft = ["ss_model.base.stft.conv_real.weight", "ss_model.base.stft.conv_imag.weight",
            "ss_model.base.istft.ola_window", "ss_model.base.istft.conv_real.weight",
            "ss_model.base.istft.conv_imag.weight"]
    order = stft + [k for k in state if k.startswith("ss_model.") and k not in stft] + \
        [k for k in state if k.startswith("query_encoder.model.")]
    assert len(order) == len(state)
    reference_names = list(REFERENCE_STFT_PARAMETERS) + [name for name, _ in net.named_parameters()]
    unused = unused_resunet_parameters(net)
    trained = [name for name, _ in net.named_parameters() if name not in unused]
    ours_optimizer = saved["optimizer_states"][0]
    group = ours_optimizer["param_groups"][0]
    step = saved["global_step"]
    entries = {reference_names.index(name): {**values, "step": torch.tensor(float(values["step"]))}
               for name, values in zip(trained, (ours_optimizer["state"][i] for i in range(len(trained))), strict=True)}
    optimizer = {"state": entries, "param_groups": [{
        "lr": group["lr"], "betas": tuple(group["betas"]), "eps": group["eps"], "weight_decay": group["weight_decay"],
        "amsgrad": group["amsgrad"], "foreach": None, "maximize": False, "capturable": False,
        "initial_lr": group["initial_lr"], "params": list(range(len(reference_names)))}]}
    schedule = saved["lr_schedulers"][0]
    scheduler = {"base_lrs": list(schedule["base_lrs"]), "last_epoch": step, "verbose": False,
                 "_step_count": step + 1, "_get_lr_called_within_step": False,
                 "_last_lr": list(schedule["_last_lr"]), "lr_lambdas": [None]}
    torch.save({"epoch": 0, "global_step": step, "pytorch-lightning_version": "2.0.0",
                "state_dict": {k: state[k] for k in order}, "loops": lightning_2_0_loops(step), "callbacks": {},
                "optimizer_states": [optimizer], "lr_schedulers": [scheduler]}, path)
    return path



def test_the_reference_optimizer_order_is_the_official_modules_order() -> None:
    """AudioSep's checkpoint lists the official ResUNet30's state in module order: its parameters in
    that order (buffers left out: batch-norm statistics, torchlibrosa's `ola_window`) are what
    `ss_model.parameters()` gave the official AdamW, 214 of them."""
    from dcase9.training.models import ModelContext, build_model

    listing = Path(__file__).parent / "fixtures" / "resunet30_state_dict_audiosep32k.txt"
    keys = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    buffers = ("running_mean", "running_var", "num_batches_tracked", "ola_window")
    official_order = [k for k in keys if not k.endswith(buffers)]
    config = assemble_config(preset="system4-audiosep")
    model = build_model("resunet30", config.model_options(), ModelContext(32000, lambda name: Path(name)), None)
    assert model.reference_parameter_names() == official_order and len(official_order) == 214
    assert len(list(model.trainable_parameters())) == 186

def test_a_run_of_the_official_training_code_continues_as_if_never_stopped(demo_root: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from dcase9.cli import app
    from dcase9.models.checkpoints import read_checkpoint
    from dcase9.models.resunet import ResUNet30
    from dcase9.training import train

    def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
        state = read_checkpoint(checkpoint)["state_dict"]
        return {k: v for k, v in state.items() if k.startswith("ss_model.") and v.is_floating_point()}

    # a warm-up schedule, so that its position matters: x0.001 for 2 steps, then x0.01
    schedule = {"kind": "constant_warm_up", "warm_up_steps": 2}
    config = tiny_run_config(demo_root, 4, schedule=schedule)
    train(config, tmp_path / "straight", progress=False, lightning_info=False)
    two = config.model_copy(update={"trainer": config.trainer.model_copy(update={"max_steps": 2})})
    train(two, tmp_path / "official", progress=False, lightning_info=False)
    model = config.model_options()
    net = ResUNet30(n_fft=model.n_fft, hop_length=model.hop_length, channels=model.channels, pools=model.pools)
    reference = reference_layout_checkpoint(tmp_path / "official" / "last.ckpt", tmp_path / "step=2.ckpt", net)
    assert len(torch.load(reference)["optimizer_states"][0]["param_groups"][0]["params"]) == 4 + len(
        list(net.parameters()))

    continued = train(config, tmp_path / "continued", resume_from=reference, progress=False, lightning_info=False)
    assert (continued.start_step, continued.global_step, continued.steps_this_run) == (2, 4, 2)
    summary = json.loads((tmp_path / "continued" / "summary.json").read_text())
    assert (summary["start_step"], summary["steps_this_run"]) == (2, 2)
    assert summary["continued_from"] == {"checkpoint": str(reference), "step": 2}
    straight = weights(tmp_path / "straight" / "last.ckpt")
    for key, value in weights(tmp_path / "continued" / "last.ckpt").items():
        torch.testing.assert_close(value, straight[key], rtol=1e-5, atol=1e-6, msg=key)
    saved = read_checkpoint(tmp_path / "continued" / "last.ckpt")
    assert saved["dcase9"]["config"]["init"] == str(reference)
    from dcase9.training.models import unused_resunet_parameters

    assert len(saved["optimizer_states"][0]["state"]) == len(list(net.parameters())) - len(
        unused_resunet_parameters(net))  # dcase9's AdamW: the tensors that train

    runner = CliRunner()
    base = ["train", "--preset", "baseline", "--data", str(demo_root / "train" / "train.json"),
            "--set", "model.n_fft=128", "--set", "model.hop_length=64", "--set", "model.channels=[4, 8]",
            "--set", "model.pools=[[2, 2], [2, 2]]", "--set", "query_encoder.source=random",
            "--set", "query_encoder.tokenizer=tiny", "--set", f"query_encoder.architecture={json.dumps(TINY_CLAP)}",
            "--set", "schedule.warm_up_steps=2", "--set", "optimizer.lr=0.003", "--set", "data.segment_seconds=0.5",
            "--batch-size", "2", "--num-workers", "0", "--steps", "3", "--no-progress"]
    # the published checkpoints hold no optimizer state: refused, naming --init
    weights_only = torch.load(reference)
    weights_only.update(optimizer_states=[], lr_schedulers=[])
    torch.save(weights_only, tmp_path / "published.ckpt")
    result = runner.invoke(app, [*base, "--resume-from", str(tmp_path / "published.ckpt"), "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "holds no optimizer state" in result.output and "--init" in result.output
    # a schedule other than the run's: refused, saying which
    result = runner.invoke(app, [*base, "--set", "schedule.warm_up_steps=10", "--resume-from", str(reference),
                                 "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "learning rate at step 2" in " ".join(result.output.split())
    # an optimizer over other tensors: refused
    other = torch.load(reference)
    other["optimizer_states"][0]["param_groups"][0]["params"] = list(range(len(list(net.parameters()))))
    torch.save(other, tmp_path / "other.ckpt")
    result = runner.invoke(app, [*base, "--resume-from", str(tmp_path / "other.ckpt"), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "another net or of other training code" in " ".join(result.output.split())
    assert not any((tmp_path / name / "last.ckpt").exists() for name in "abc")
