"""`dcase9 train` end to end on CPU: train, resume, load with `dcase9 infer`; --init; the configuration layers."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from tests.tiny_models import (resunet_weights, tiny_clap_laion_weights, tiny_clap_options, tokenizer_folder,
                               write_lightning_checkpoint)
from dcase9.cli import app
from dcase9.errors import ConfigError, MissingDependencyError
from dcase9.models.checkpoints import read_checkpoint
from dcase9.models.resunet import ResUNet30
from dcase9.models.tiny import TINY_CLAP
from dcase9.config import parse_assignment
from dcase9.training.config import assemble_config, preset_names

runner = CliRunner()

# A net small enough that a step takes milliseconds: 2 levels, 4-8 channels, STFT 128/64, 0.5 s segments.
TINY_RUN: dict[str, Any] = {
    "data": {"segment_seconds": 0.5, "batch_size": 2, "num_workers": 0},
    "model": {"kind": "resunet30", "n_fft": 128, "hop_length": 64, "channels": [4, 8], "pools": [[2, 2], [2, 2]]},
    "query_encoder": {"source": "random", "tokenizer": "tiny", "architecture": dict(TINY_CLAP)},
    "trainer": {"log_every_n_steps": 1, "progress_bar": False},
    "validation": {"every_steps": 2, "limit": 2, "batch_size": 2, "sanity_steps": 0},
    "checkpoint": {"every_steps": 2, "last_every_steps": 1},
}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_RUN))
    return path


def train_args(config: Path, demo_root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "demo", "--config", str(config), "--data", str(demo_root / "train" / "train.json"),
            "--validation", str(demo_root / "validation"), "--out", str(out), *extra]


def strict_read(path: Path) -> dict[str, Any]:
    """The checkpoint as `dcase9 infer` reads it; any fallback from weights-only loading is a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read_checkpoint(path)


def test_train_resume_and_infer_through_the_cli(tiny_config: Path, demo_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, train_args(tiny_config, demo_root, run, "--steps", "2"))
    assert result.exit_code == 0, result.output
    assert re.search(r"steps(\s*│\s*|:\s+)2\s*(│|\n)", result.output)  # a new run: its steps, no range
    said = "".join(result.output.split())  # the command may wrap anywhere
    assert "dcase9infer--systembaseline" in said and f"--data{demo_root / 'validation'}" in said  # no placeholder
    first = strict_read(run / "last.ckpt")
    assert first["global_step"] == 2 and (run / "checkpoints" / "step=2.ckpt").is_file()

    # The official layout: the net under ss_model. with ResUNet30's names, CLAP under
    # query_encoder.model. with laion's names, and our configuration in plain types.
    state = first["state_dict"]
    assert {k.split(".")[0] for k in state} == {"ss_model", "query_encoder"}
    assert "ss_model.base.bn0.running_mean" in state and "ss_model.film.encoder_block1->conv_block1->beta1.weight" in state
    assert "query_encoder.model.text_branch.embeddings.word_embeddings.weight" in state
    assert not any(".text_model." in k or ".audio_model." in k for k in state)
    assert first["dcase9"]["config"]["model"]["channels"] == [4, 8]
    assert first["dcase9"]["system_options"] == {"n_fft": 128, "hop_length": 64, "channels": [4, 8],
                                                 "pools": [[2, 2], [2, 2]], "clap": tiny_clap_options()}
    assert set(first["dcase9"]["tokenizer_files"]) >= {"vocab.json", "merges.txt"}
    metrics = (run / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/sdri" in metrics

    (run / "checkpoints" / "step=1.ckpt").write_bytes(b"mine")  # named like one, not written by the run
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "4", "--set", "checkpoint.keep=1"])
    assert result.exit_code == 0, result.output
    # The steps this run did, and where the run stands; its progress (plain lines: not a terminal) counts them.
    assert "2 (from step 2 to 4)" in " ".join(result.output.split()) and "training (from step 2): 2/2," in result.output
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["start_step"], summary["global_step"], summary["steps_this_run"]) == (2, 4, 2)
    resumed = strict_read(run / "last.ckpt")
    assert resumed["global_step"] == 4 and resumed["dcase9"]["config"]["checkpoint"]["keep"] == 1
    # keep=1 pruned step=2 (the run's ledger vouches for it); a file of the user's there stays
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step=1.ckpt", "step=4.ckpt", "written.jsonl"]
    assert (run / "logs" / "version_1" / "metrics.csv").is_file()

    # Resuming continued the same data stream, mixtures and optimizer state: it equals a run that
    # was never interrupted.
    straight = tmp_path / "straight"
    result = runner.invoke(app, train_args(tiny_config, demo_root, straight, "--steps", "4"))
    assert result.exit_code == 0, result.output
    uninterrupted = strict_read(straight / "last.ckpt")["state_dict"]
    for key, value in resumed["state_dict"].items():
        torch.testing.assert_close(value, uninterrupted[key], rtol=1e-5, atol=1e-6, msg=key)

    estimates = tmp_path / "estimates"
    # The checkpoint is all inference needs: it carries the net's and CLAP's settings and the tokenizer.
    result = runner.invoke(app, ["infer", "--system", "baseline", "--checkpoint", str(run / "last.ckpt"), "--offline",
                                 "--data", str(demo_root / "validation"), "--out", str(estimates), "--limit", "2"])
    assert result.exit_code == 0, result.output
    outputs = sorted(estimates.glob("*.wav"))
    assert len(outputs) == 2 and sf.info(outputs[0]).frames == 160000


def test_a_run_folder_is_not_overwritten_and_resume_needs_one(tiny_config: Path, demo_root: Path,
                                                              tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.ckpt").write_bytes(b"")
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({"extends": "demo"}))
    result = runner.invoke(app, train_args(tiny_config, demo_root, tmp_path / "run", "--steps", "1"))
    assert result.exit_code == 2 and "--resume" in result.output
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "none"), "--resume"])
    assert result.exit_code == 2 and "config.yaml not found" in " ".join(result.output.split())


def official_clap_weights(seed: int) -> dict[str, torch.Tensor]:
    """A tiny laion CLAP with every tensor of laion's layout; those dcase9's CLAP does not hold (fixed
    buffers, classifier, training MLPs) get random values, so that carrying them over shows (not the mel
    filters: loading compares them with the front end's)."""
    from dcase9.models.clap import ClapArchitecture
    from dcase9.models.official_layout import complete_laion_extras

    generator = torch.Generator().manual_seed(seed)
    extras = complete_laion_extras({}, ClapArchitecture(**TINY_CLAP).spec())
    extras = {k: torch.randn(v.shape, generator=generator) if v.is_floating_point() and not k.endswith("melW") else v
              for k, v in extras.items()}
    return {**tiny_clap_laion_weights(seed=seed), **extras}


def test_training_starts_from_an_official_layout_checkpoint(tiny_config: Path, demo_root: Path,
                                                            tmp_path: Path) -> None:
    from dcase9.training import train

    official = resunet_weights(n_fft=128, hop_length=64, seed=5)  # with random values for the fixed STFT tensors
    clap = official_clap_weights(seed=9)
    checkpoint = write_lightning_checkpoint(tmp_path / "baseline.ckpt", resunet=official, clap=clap)
    config = assemble_config(preset="demo", config_file=tiny_config, overrides=[
        {"data": {"datafiles": [str(demo_root / "train" / "train.json")]},
         "model": {"channels": None, "pools": None},  # the official net, as in the checkpoint
         "query_encoder": {"source": "auto", "tokenizer": str(tokenizer_folder(tmp_path / "tok"))},
         "init": str(checkpoint), "optimizer": {"lr": 0.0},
         "validation": {"data": None}, "checkpoint": {"every_steps": None}},
        parse_assignment("trainer.max_steps=1")])
    result = train(config, tmp_path / "run", progress=False)
    assert result.global_step == 1 and result.start_step == 0
    # No system facts given: the command comes from the configuration (`system: baseline`; no validation set).
    assert result.infer_command == (f"dcase9 infer --system baseline --checkpoint {tmp_path / 'run' / 'last.ckpt'} "
                                    "--data DATA_DIR --out ESTIMATES_DIR") and result.no_infer_command == ""
    state = strict_read(tmp_path / "run" / "last.ckpt")["state_dict"]
    # Every tensor of the official layout, no other: any loader (a strict load_state_dict into the
    # reference model too) accepts it.
    assert set(state) == set(strict_read(checkpoint)["state_dict"])
    net = {k[len("ss_model."):]: v for k, v in state.items() if k.startswith("ss_model.")}
    assert set(net) == set(official)
    parameters = {name for name, _ in ResUNet30(n_fft=128, hop_length=64).named_parameters()}
    moved = []
    for key, value in net.items():
        if key in parameters or key.startswith(("base.stft.", "base.istft.")):
            assert torch.equal(value, official[key]), key  # lr 0; what --init gave is carried over
        elif key.endswith("running_mean") and not torch.equal(value, official[key]):
            moved.append(key)  # batch-norm statistics did see the training batch
    assert moved
    encoder = {k[len("query_encoder.model."):]: v for k, v in state.items() if k.startswith("query_encoder.model.")}
    assert encoder.keys() == clap.keys() and all(torch.equal(encoder[k], clap[k]) for k in clap)


def test_a_fresh_run_writes_every_tensor_of_the_official_layout(tiny_config: Path, demo_root: Path,
                                                                tmp_path: Path) -> None:
    """No --init, a random CLAP: the fixed tensors are rebuilt (torchlibrosa's and laion's definitions),
    the classifier and training MLPs made as a fresh laion model would; resuming keeps them."""
    from dcase9.models.official_layout import (laion_fixed_tensors, laion_training_only_tensors,
                                                resunet30_fixed_tensors)
    from dcase9.models.clap import ClapArchitecture

    run = tmp_path / "run"
    result = runner.invoke(app, train_args(tiny_config, demo_root, run, "--steps", "1", "--set",
                                           "validation.data=null"))
    assert result.exit_code == 0, result.output
    state = strict_read(run / "last.ckpt")["state_dict"]
    net = ResUNet30(n_fft=128, hop_length=64, channels=(4, 8), pools=((2, 2), (2, 2)))
    fixed = resunet30_fixed_tensors(128)
    spec = ClapArchitecture(**TINY_CLAP).spec()
    clap_extras = {**laion_fixed_tensors(spec), **laion_training_only_tensors(spec)}
    expected = ({f"ss_model.{k}" for k in [*net.state_dict(), *fixed]}
                | {f"query_encoder.model.{k}" for k in [*tiny_clap_laion_weights(), *clap_extras]})
    assert set(state) == expected
    for key, value in fixed.items():
        assert torch.equal(state[f"ss_model.{key}"], value), key
    for key, value in clap_extras.items():
        assert torch.equal(state[f"query_encoder.model.{key}"], value), key
    first = {k: v.clone() for k, v in state.items()}
    result = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "2"])
    assert result.exit_code == 0, result.output
    resumed = strict_read(run / "last.ckpt")["state_dict"]
    assert set(resumed) == expected
    for key in [*(f"ss_model.{k}" for k in fixed), *(f"query_encoder.model.{k}" for k in clap_extras)]:
        assert torch.equal(resumed[key], first[key]), key


def test_presets_validate_and_describe_their_data() -> None:
    assert set(preset_names()) >= {"baseline", "system1", "system4", "system4-audiosep", "demo"}
    baseline = assemble_config(preset="baseline")
    assert (baseline.optimizer.name, baseline.optimizer.lr, baseline.optimizer.amsgrad) == ("adamw", 1e-3, True)
    assert (baseline.schedule.kind, baseline.schedule.warm_up_steps) == ("constant_warm_up", 10000)
    assert (baseline.data.batch_size, baseline.data.segment_seconds, baseline.data.sample_rate) == (16, 10.0, 16000)
    assert (baseline.checkpoint.every_steps, baseline.trainer.max_steps) == (20000, 200000)
    assert baseline.query_encoder.source == "auto" and baseline.loss == "l1_wav"
    system1 = assemble_config(preset="system1")
    assert system1.system == "1" and "GPT-4" in system1.description
    system4 = assemble_config(preset="system4")
    assert system4.system == "4" and system4.trainer.max_epochs == 100 and "0.7" in system4.description
    assert system4.data.batch_size == 16 and "--devices 4" in system4.description
    audiosep = assemble_config(preset="system4-audiosep")
    assert audiosep.init == "audiosep-checkpoint" and audiosep.data.sample_rate == 32000
    assert audiosep.model_options().n_fft == 2048 and audiosep.system == "4-audiosep"


def test_every_preset_trains_the_net_its_system_loads() -> None:
    """A preset's rate and STFT are the ones the system it names runs with (the catalog's, from
    RESUNET30_CONFIGS): a checkpoint trained with it loads as that system."""
    from dcase9.systems import get_system

    for name in preset_names():
        config = assemble_config(preset=name)
        if config.model.kind != "resunet30" or config.system is None or name == "demo":
            continue
        spec = get_system(config.system)
        options = config.model_options()
        assert config.data.sample_rate == spec.sample_rate, name
        assert (options.n_fft, options.hop_length) == (spec.options["n_fft"], spec.options["hop_length"]), name


def test_configuration_layers_and_their_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config_file = tmp_path / "mine.yaml"
    config_file.write_text("extends: system1\ndata:\n  datafiles: [a.json, {path: b.json, weight: 2}]\n")
    config = assemble_config(config_file=config_file, overrides=[parse_assignment("mixing.lower_db=-5"),
                                                                 {"trainer": {"precision": "bf16"}}])
    assert config.system == "1" and config.mixing.lower_db == -5 and config.trainer.precision == "bf16-mixed"
    assert [d.path for d in config.data.datafiles] == [str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    assert config.data.datafiles[1].weight == 2.0
    config_file.write_text("data:\n  batch_size: 4\n  segment_secs: 3\n")
    with pytest.raises(ConfigError, match=r"line 3, data.segment_secs: unknown key"):
        assemble_config(config_file=config_file)
    with pytest.raises(ConfigError, match="unknown model kind 'unet9'"):
        assemble_config(overrides=[{"model": {"kind": "unet9"}}])
    with pytest.raises(ConfigError, match=r"model.n_ffft: unknown key"):
        assemble_config(overrides=[{"model": {"n_ffft": 512}}])
    with pytest.raises(ConfigError, match="unknown training preset 'sytem1'"):
        assemble_config(preset="sytem1")
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        parse_assignment("lr")


def test_print_config_shows_flags_applied(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--preset", "system4", "--out", str(tmp_path), "--steps", "7",
                                 "--devices", "0,1", "--precision", "fp16", "--data", "x.json@0.5", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["trainer"]["max_steps"] == 7 and printed["trainer"]["max_epochs"] is None
    assert printed["trainer"]["devices"] == [0, 1] and printed["trainer"]["precision"] == "16-mixed"
    assert printed["data"]["datafiles"][0]["weight"] == 0.5 and printed["system"] == "4"


def test_unused_resunet_parameters_are_frozen_so_plain_ddp_works() -> None:
    from dcase9.training.models import ModelContext, ResUNet30Options, build_resunet30

    model = build_resunet30(ResUNet30Options(n_fft=128, hop_length=64, channels=[4, 8, 8],
                                             pools=[[2, 2], [2, 2], [1, 2]]), ModelContext(16000, Path))
    model.separate(torch.randn(2, 4000), torch.randn(2, 512)).sum().backward()
    without_gradient = {name for name, p in model.net.named_parameters() if p.grad is None}
    frozen = {name for name, p in model.net.named_parameters() if not p.requires_grad}
    assert without_gradient == frozen and len(frozen) == 4 * 3  # bn2 and its FiLM linear per decoder block


def test_missing_lightning_is_an_actionable_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib

    real_import = importlib.import_module

    def no_lightning(name: str, *args: Any) -> Any:
        if name.split(".")[0] == "lightning":
            raise ImportError("No module named 'lightning'")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_lightning)
    from dcase9.training import train

    with pytest.raises(MissingDependencyError, match=r"pip install 'dcase9\[train\]'"):
        train(assemble_config(preset="demo"), tmp_path / "run")


def test_ctrl_c_saves_last_checkpoint_and_says_how_to_resume(tiny_config: Path, demo_root: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from dcase9.training.module import SeparationTraining

    original = SeparationTraining.training_step

    def interrupted_at_step_3(self: SeparationTraining, batch: Any, batch_idx: int) -> Any:
        if self.global_step == 3:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    monkeypatch.setattr(SeparationTraining, "training_step", interrupted_at_step_3)
    handler = signal.getsignal(signal.SIGINT)
    try:  # last.ckpt is due only every 100 steps: the one found was written by the interruption
        result = runner.invoke(app, train_args(tiny_config, demo_root, tmp_path / "run", "--steps", "10",
                                               "--set", "checkpoint.last_every_steps=100",
                                               "--set", "checkpoint.every_steps=null"))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after an interruption
    assert result.exit_code == 130, result.output
    assert "interrupted at step 3" in result.output and "--resume" in result.output
    assert strict_read(tmp_path / "run" / "last.ckpt")["global_step"] == 3


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny_config: Path, demo_root: Path, tmp_path: Path) -> None:
    """Lightning's DDP (gloo on CPU): both processes run the command; checkpoints, validation and the
    skip summary go through their collectives without a deadlock."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dcase9.cli", *train_args(tiny_config, demo_root, tmp_path / "run", "--steps", "4"),
               "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
               "--set", "trainer.sync_batchnorm=false", "--no-progress"]  # SyncBatchNorm needs CUDA
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("Training run") == 1  # only rank 0 reports
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 4 and "val/sdri" in summary["validation"]
    assert summary["validation"]["val/mixtures"] == 2.0  # one mixture per process, both counted
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt")) == ["step=2.ckpt", "step=4.ckpt"]
    assert strict_read(tmp_path / "run" / "last.ckpt")["global_step"] == 4


def test_training_leaves_the_callers_warnings_filters_and_loggers_as_they_were(tiny_config: Path, demo_root: Path,
                                                                               tmp_path: Path) -> None:
    """A library call never changes its caller's process: the filters that quiet Lightning's banners hold
    for the run only."""
    import logging
    import warnings

    from dcase9 import api

    filters = list(warnings.filters)
    levels = {name: logging.getLogger(name).level for name in ("lightning.pytorch", "lightning.fabric")}
    rank_zero = list(logging.getLogger("lightning.pytorch.utilities.rank_zero").filters)
    overrides = yaml.safe_load(tiny_config.read_text())
    overrides["data"] = {**overrides.get("data", {}), "datafiles": [str(demo_root / "train" / "train.json")]}
    overrides["trainer"] = {**overrides.get("trainer", {}), "max_steps": 1}
    overrides["validation"] = {"data": None}
    api.train(tmp_path / "run", preset="demo", overrides=overrides, progress=False)
    assert warnings.filters == filters
    assert {name: logging.getLogger(name).level for name in levels} == levels
    assert logging.getLogger("lightning.pytorch.utilities.rank_zero").filters == rank_zero


def test_a_resumed_runs_bar_counts_from_its_step_and_rates_its_own_steps() -> None:
    """Lightning does not call on_train_epoch_start when it resumes inside an epoch (always, for this data
    stream): the bar is set up at on_train_start, at the restored step, and its rate counts only the steps
    taken since."""
    from types import SimpleNamespace

    from tqdm import tqdm

    from dcase9.training.module import StepProgressBar

    bar = StepProgressBar()
    trainer = SimpleNamespace(global_step=125, max_steps=300)
    bar.on_train_start(trainer)  # type: ignore[arg-type]
    shown = bar.train_progress_bar
    assert (shown.n, shown.total) == (125, 300)
    started = shown.start_t
    shown._time = lambda: started + 10.0  # 10 steps in 10 s
    shown.n = 135
    text = tqdm.format_meter(**shown.format_dict)
    assert "135/300" in text and "1.00it/s" in text
    shown.close()


def test_training_shows_its_own_progress_and_summary_only(tiny_config: Path, demo_root: Path, tmp_path: Path) -> None:
    """Lightning's start-up banners, info lines and model summary table appear only with --lightning-info
    (what a user sees: the process's own output, not a test runner's capture)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    banners = [r"GPU available", r"TPU available", r"Total FLOPs", r"[|┃]\s*Name\s*[|┃]", r"Trainable params",
               r"`Trainer.fit` stopped"]

    def run(out: str, *extra: str) -> str:
        command = [sys.executable, "-m", "dcase9.cli", "train", "--preset", "demo", "--config", str(tiny_config),
                   "--data", str(demo_root / "train" / "train.json"), "--out", str(tmp_path / out), "--steps", "1",
                   *extra]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    quiet = run("quiet")
    assert "training:" in quiet and "Training run" in quiet and "separate with:" in quiet  # its own progress, result
    assert [b for b in banners if re.search(b, quiet)] == []
    # Not a terminal: plain lines a log can hold, no bar redrawn with carriage returns.
    assert "\r" not in quiet and re.search(r"training: 1/1, [0-9.]+ steps/s, \d+ s, loss [0-9.e+-]+", quiet), quiet
    told = run("told", "--lightning-info")
    assert [b for b in banners if not re.search(b, told)] == []


def test_a_result_describes_the_steps_of_its_own_run() -> None:
    from dcase9.training import TrainResult

    resumed = TrainResult(Path("run"), Path("run/last.ckpt"), start_step=125, global_step=300, seconds=58.2,
                          throughput={"steps_per_second": 3.014})
    assert resumed.steps_this_run == 175
    assert resumed.describe_steps() == "175 steps in 58 s (3.01 steps/s), from step 125 to 300"
    fresh = TrainResult(Path("run"), Path("run/last.ckpt"), start_step=0, global_step=2, seconds=4.0)
    assert fresh.describe_steps() == "2 steps in 4 s"  # too few steps to time: no rate
