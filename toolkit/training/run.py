"""`train()`: one training run, from a configuration to checkpoints in a folder.

Layout of the run folder `OUT`:

    OUT/config.yaml              the full configuration of the run (also inside every checkpoint)
    OUT/last.ckpt                the latest state, for --resume and for `dcase9 infer --checkpoint`: it
                                 carries the system options and tokenizer inference needs
                                 (`dcase9.models.description`)
    OUT/checkpoints/step=N.ckpt  at the configured cadence and at the final step
    OUT/logs/version_K/metrics.csv   train/loss, train/lr, val/sdr, val/sdri, val/sisdr, ... (one
                                 version per start or resume); OUT/tensorboard/ when TensorBoard is installed
    OUT/tokenizer/               the tiny tokenizer, when the configuration asks for it
    OUT/summary.json             status (finished, interrupted, or diverged: at which step and why),
                                 the steps of this start (start_step, global_step, steps_this_run), its
                                 time and throughput, skipped clips, last validation, the last checkpoint
                                 and its step, the infer command (or no_infer_command: why there is none)

A run whose loss, weights or optimizer state stop being finite numbers stops with
`TrainingDiverged` (exit 1 on the command line): no checkpoint with them is written, so last.ckpt
and checkpoints/ keep the last good state. Checkpoints given to start from (`--init`, the query
encoder's source, last.ckpt for `--resume`) are refused when they hold NaN or infinite values.

Multi-GPU and multi-node runs are Lightning's: `trainer.devices`, `trainer.num_nodes`,
`trainer.strategy` (DDP when there is more than one process); under SLURM or torchrun Lightning
reads the cluster environment. Every process runs this function; only rank 0 writes files.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dcase9.errors import CheckpointError, ConfigError, Dcase9Error
from dcase9.files import check_no_overlap, new_folder, require_folder, write_json_atomic, write_text_atomic
from dcase9.hub import checkpoint_location, local_checkpoint
from dcase9.lazy import require
from dcase9.models.description import tokenizer_files
from dcase9.training.config import (DEMO_TOKENIZER, QUERY_SOURCE_AUTO, QUERY_SOURCE_RANDOM, TINY_TOKENIZER,
                                     TrainConfig, dump_train_config)
from dcase9.weights import CLAP_WEIGHT, TOKENIZER_WEIGHT

RESUME_OR_RESUME_FROM = ("--resume-from starts a new run folder from another run's checkpoint, --resume continues "
                         "the run in --out: give one of them")
LAST_CHECKPOINT = "last.ckpt"
CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (`terminated`) stopped the run; `last.ckpt` holds its state at `step`."""

    def __init__(self, checkpoint: Path, step: int, terminated: bool = False) -> None:
        super().__init__(f"interrupted at step {step}; saved {checkpoint}")
        self.checkpoint, self.step, self.terminated = checkpoint, step, terminated


class TrainingDiverged(Dcase9Error):
    """The loss, the weights or the optimizer state stopped being finite numbers; the run stopped
    without saving them. `step` is the optimizer step at fault, `last_good` the checkpoint left (or
    None when none was saved)."""

    exit_code = 1  # the command ran and found a problem (with the run, not with its options)

    def __init__(self, message: str, step: int, last_good: Path | None) -> None:
        super().__init__(message)
        self.step, self.last_good = step, last_good


@dataclass(frozen=True)
class SystemFacts:
    """What training needs to know of the system that will load its checkpoints (`config.system`).

    The library does not import `systems/`: the application layer (`dcase9.api.system_facts`,
    which `dcase9 train` and `api.train` use) describes the system. `sample_rate` is checked
    against `data.sample_rate`; `infer_command(checkpoint, local_weights, data)` writes the command line
    that separates with the result (`local_weights`: this run's local copies of registry weights,
    which the command passes on where inference loads them; the system options and a tokenizer
    that is not the registry's travel inside the checkpoint; `data`: the validation set, when there is one).
    """

    name: str
    sample_rate: int
    infer_command: Callable[[Path, Mapping[str, str], str | None], str]


@dataclass
class TrainResult:
    """What one call of `train` did. `start_step` is the global step it started from (0 for a new run,
    last.ckpt's for `resume`, the reference checkpoint's for `resume_from`) and `global_step` the one
    it reached: this call trained `steps_this_run` steps in `seconds`, and `throughput` is measured
    over those steps only. `infer_command` is the `dcase9 infer` command line that separates with the
    result; when there is none (a run that diverged, a configuration that names no system, a process
    other than rank 0), `no_infer_command` says why."""

    out_dir: Path
    last_checkpoint: Path
    start_step: int
    global_step: int
    seconds: float
    throughput: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    infer_command: str = ""
    no_infer_command: str = ""  # why `infer_command` is empty (empty when there is one)
    tokenizer: Path | None = None
    rank: int = 0  # the process's global rank: only rank 0's result has the summary

    @property
    def steps_this_run(self) -> int:
        return self.global_step - self.start_step

    def describe_steps(self) -> str:
        """`175 steps in 58 s (3.02 steps/s), from step 125 to 300` (the range only for a run that
        continued another); the rate is `throughput`'s, when enough steps were timed to measure it."""
        rate = self.throughput.get("steps_per_second")
        steps = self.steps_this_run
        text = f"{steps} step{'' if steps == 1 else 's'} in {self.seconds:.0f} s"
        text += f" ({rate:.2f} steps/s)" if rate is not None else ""
        return text + (f", from step {self.start_step} to {self.global_step}" if self.start_step else "")


def train(config: TrainConfig, out: str | Path, *, system: SystemFacts | None = None, resume: bool = False,
          progress: bool | None = None, lightning_info: bool = False, trust_checkpoint: bool = False,
          resume_from: str | Path | None = None) -> TrainResult:
    """Train as `config` says, writing checkpoints and logs into `out`; see the module docstring.

    `system` describes `config.system` (see `SystemFacts`; `dcase9.api.train` passes it): without
    it the data rate is not checked against the system's, and the infer command is written from the
    configuration alone (`config.system`, passing on every local weight of `config.weights`); with
    neither, the result's `no_infer_command` says so.
    `resume=True` continues from `out/last.ckpt` (weights, optimizer, schedule, step, data stream);
    without it, a folder that already holds a run is refused. `progress` overrides
    `trainer.progress_bar`; Lightning's start-up messages (devices, trainer settings), its model
    summary and its info lines are shown only with `lightning_info=True` (`dcase9 train
    --lightning-info`): the run's own progress and result say what matters. `trust_checkpoint=True` lets the checkpoints given to start from (`init`,
    `query_encoder.source`) run the pickled code they contain (files you trust only).
    `resume_from` continues, in the new folder `out`, a run of the official training code from its
    Lightning checkpoint (weights, optimizer moments mapped by tensor, schedule position, step; see
    `dcase9.training.reference`); it becomes the run's `init`.
    """
    require("lightning", extra="train", purpose="dcase9 train")
    from dcase9.weights import WeightResolver, weight_entries
    from dcase9.training.data import ClipDataset, TrainSampler, check_audio_present, read_datafiles
    from dcase9.training.models import ModelContext, build_model

    out = Path(out)
    last = out / LAST_CHECKPOINT
    continued = None
    if resume_from is not None:
        if resume:
            raise ConfigError(RESUME_OR_RESUME_FROM)
        resume_from = Path(resume_from).expanduser().resolve()
        if config.init is not None and Path(config.init) != resume_from:
            raise ConfigError(f"--resume-from {resume_from} takes the weights from that file; init ({config.init}) "
                              "would give others: give one of them")
        config = config.model_copy(update={"init": str(resume_from)})
    if resume and not last.is_file():
        raise Dcase9Error(f"nothing to resume: {last} does not exist")
    if not resume and last.is_file():
        raise Dcase9Error(f"{out} already holds a training run ({last}); pass --resume to continue it, "
                          "or choose another --out")
    require_folder(out, "the training run")
    inputs: dict[str, str | Path | None] = {"validation.data": config.validation.data}
    for k, spec in enumerate(config.data.datafiles):
        inputs.update({f"data.datafiles[{k}]": spec.path, f"data.datafiles[{k}].audio_root": spec.audio_root})
    if config.init is not None and local_checkpoint(config.init) is not None \
            and Path(config.init).exists():  # a file or folder, not a registry name or a Hub folder
        inputs["init"] = config.init
    check_no_overlap({"--out": out}, inputs)
    start_step = 0  # the global step this call starts from
    if resume:
        start_step = check_resumable(last)
    if resume_from is not None:
        from dcase9.training.reference import check_settings, read_reference_run

        continued = read_reference_run(resume_from, trust=trust_checkpoint)
        check_settings(continued, config)
        start_step = continued.step
    if system is not None and config.system is not None and system.sample_rate != config.data.sample_rate:
        raise ConfigError(f"system '{system.name}' runs at {system.sample_rate} Hz but data.sample_rate is "
                          f"{config.data.sample_rate}: the trained model would not load as that system")
    show_progress = config.trainer.progress_bar if progress is None else progress
    # A run refused before it produced anything (its data, weights or settings are unusable) leaves no --out
    # folder behind; one that saved a checkpoint or wrote its summary keeps it.
    def produced_nothing() -> bool:
        return not (out / LAST_CHECKPOINT).exists() and not (out / SUMMARY_FILE).exists()

    with new_folder(out, discard_on_error=produced_nothing) if _is_rank_zero() else nullcontext():
        datafiles = read_datafiles(config.data.datafiles)
        check_audio_present(datafiles, seed=config.seed)
        train_set = ClipDataset(datafiles, sample_rate=config.data.sample_rate, segment_samples=config.segment_samples(),
                                min_seconds=config.data.min_clip_seconds, seed=config.seed,
                                max_failed_draws=config.data.max_failed_draws)
        sampler = TrainSampler([len(d.items) for d in datafiles], [d.weight for d in datafiles],
                               batch_size=config.data.batch_size, seed=config.seed)

        resolver = WeightResolver({name: checkpoint_location(path) for name, path in config.weights.items()},
                                  offline=config.offline, progress=show_progress,
                                  roles={config.init: "init"} if config.init in weight_entries() else None)
        resolver.require([*config.weights, *training_weights(config, resume=resume,
                                                              continued=continued is not None)])
        torch.manual_seed(config.seed)  # the same initial weights in every process and every run
        model = build_model(config.model.kind, config.model_options(), ModelContext(config.data.sample_rate, resolver),
                            config.loss)
        init_weights: dict[str, torch.Tensor] = {}
        init_source = ""
        own: dict[str, torch.Tensor] = {}
        if continued is not None:  # read once: the weights, then (in `_fit`) the rest of the state
            from dcase9.models.checkpoints import state_dict_of

            init_weights, init_source = dict(state_dict_of(continued.checkpoint)), str(continued.path)
        elif config.init is not None and not resume:  # a resumed run takes every weight from last.ckpt
            init_weights, init_source = read_init_checkpoint(config.init, resolver, trust=trust_checkpoint)
        if init_source:
            from dcase9.models.checkpoints import strip_prefix

            own = strip_prefix(init_weights, model.state_prefix)
            if not own:
                raise CheckpointError(f"{init_source}: no weights under '{model.state_prefix}' to start the "
                                      f"{config.model.kind} net from")
            model.load_initial_weights(own, f"{init_source} ({model.state_prefix}*)")
        tokenizer_path = resolve_tokenizer(config, resolver, out)
        query_encoder, clap_extras = build_query_encoder(config, resolver, tokenizer_path, init_weights, init_source,
                                                         resume=resume, trust=trust_checkpoint)
        official = official_layout_tensors(config, model, own, clap_extras, init_source)
        del init_weights, own

        validation_set, validation_specs = open_validation(config)
        info: dict[str, Any] = {"system": config.system, "tokenizer": str(tokenizer_path)}
        if _is_local_tokenizer(config):  # inference finds it in the checkpoint
            info["tokenizer_files"] = tokenizer_files(tokenizer_path)
        with _quiet_lightning(lightning_info):  # restored afterwards: a library call leaves the process as it was
            return _fit(config, out, model, query_encoder, train_set, sampler, validation_set, validation_specs, info,
                        resume=resume, start_step=start_step, show_progress=show_progress,
                        lightning_info=lightning_info, tokenizer_path=tokenizer_path, official_tensors=official,
                        system=system, continued=continued)


def _fit(config: TrainConfig, out: Path, model: Any, query_encoder: Any, train_set: Any, sampler: Any,
         validation_set: Any, validation_specs: list[Any], info: dict[str, Any], *, resume: bool,
         start_step: int, show_progress: bool, lightning_info: bool, tokenizer_path: Path,
         official_tensors: dict[str, torch.Tensor], system: SystemFacts | None,
         continued: Any = None) -> TrainResult:
    from lightning.pytorch.loggers import CSVLogger

    from dcase9.training.module import (NonFiniteTraining, PlainStepProgress, SeparationTraining, StepCheckpoints,
                                        StepProgressBar, Throughput)

    module = SeparationTraining(config, model, query_encoder, train_set=train_set, sampler=sampler,
                                validation_set=validation_set, validation_specs=validation_specs,
                                checkpoint_info=info, official_tensors=official_tensors)
    throughput = Throughput()
    checkpoints = StepCheckpoints(out, config.checkpoint.every_steps, config.checkpoint.last_every_steps,
                                  config.checkpoint.keep)
    callbacks: list[Any] = [checkpoints, throughput]
    # A terminal gets Lightning's bar; a log file plain lines (a bar there is thousands of redraws).
    redrawn_bar = show_progress and sys.stdout.isatty()
    if redrawn_bar:
        callbacks.append(StepProgressBar(refresh_rate=max(1, min(10, config.trainer.log_every_n_steps))))
    elif show_progress:
        callbacks.append(PlainStepProgress())
    loggers: list[Any] = [CSVLogger(str(out), name="logs")]
    if _tensorboard_available():
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="tensorboard"))
    validating = validation_set is not None and bool(validation_specs) and config.validation.every_steps is not None
    preloaded = None
    if continued is not None:  # Lightning restores it from memory: the file is read once
        from dcase9.training.reference import continued_checkpoint

        names = {id(parameter): name for name, parameter in model.net.named_parameters()}
        trained = [(names[id(parameter)], parameter.shape) for parameter in model.trainable_parameters()]
        reference_names = model.reference_parameter_names()
        if reference_names is None:
            raise ConfigError(f"--resume-from continues runs of the official training code, which model kind "
                              f"'{config.model.kind}' has none of")
        preloaded = (continued.path, continued_checkpoint(continued, reference_names, trained))
    trainer = _make_trainer(config, out, loggers, callbacks, validating=validating, progress=redrawn_bar,
                            model_summary=lightning_info, preloaded=preloaded)
    if trainer.is_global_zero:
        # Written once every check passed: a refused run leaves no configuration a later --resume would take.
        write_text_atomic(out / CONFIG_FILE, dump_train_config(config))
    if config.trainer.max_epochs is not None:
        steps = math.ceil(config.trainer.max_epochs * sampler.epoch_length
                          / (config.data.batch_size * trainer.world_size))
        trainer.fit_loop.epoch_loop.max_steps = max(1, steps)
    started = time.perf_counter()
    failed = False
    status = "finished"
    diverged: NonFiniteTraining | None = None
    try:
        checkpoint = out / LAST_CHECKPOINT if resume else continued.path if continued is not None else None
        trainer.fit(module, ckpt_path=str(checkpoint) if checkpoint is not None else None)
    except SystemExit:
        # Lightning turns Ctrl-C into exit(1) after its callbacks ran; report it as an interruption,
        # or as the divergence the save on the interruption found.
        diverged = checkpoints.diverged
        status = "interrupted" if diverged is None else "diverged"
        if diverged is None and checkpoints.interrupted_at is not None:
            raise TrainingInterrupted(out / LAST_CHECKPOINT, checkpoints.interrupted_at,
                                      checkpoints.terminated) from None
        if diverged is None:
            raise
    except NonFiniteTraining as stop:
        diverged, status = stop, "diverged"
    except Exception:
        failed = True  # no summary for a run that failed: it would describe training that did not happen
        raise
    finally:
        seconds = time.perf_counter() - started
        if not failed:
            skipped = module.gathered_skips().summary()  # every process takes part in the gathering
            if trainer.is_global_zero:
                result = _write_summary(config, out, trainer, module, throughput, skipped, start_step, seconds,
                                        tokenizer_path, system, status, diverged, checkpoints.saved_step, continued)
    if diverged is not None:
        raise _diverged_error(diverged, out, checkpoints.saved_step)
    if not trainer.is_global_zero:
        return TrainResult(out, out / LAST_CHECKPOINT, start_step, int(trainer.global_step), seconds,
                           no_infer_command=f"process of rank {trainer.global_rank}: rank 0's result has the "
                                            "summary and the command", rank=trainer.global_rank)
    return result


def _diverged_error(stop: Any, out: Path, saved_step: int | None) -> TrainingDiverged:
    last = out / LAST_CHECKPOINT
    kept = (f"the last good checkpoint is {last} (step {saved_step}), left as it was" if saved_step is not None
            else "no checkpoint had been saved before it, so there is no good one")
    return TrainingDiverged(f"training diverged at step {stop.step}: {stop.reason}. The run stopped without saving "
                            f"it; {kept}. (A learning rate too high? See optimizer.lr and trainer.gradient_clip_val.)",
                            stop.step, last if saved_step is not None else None)


def _make_trainer(config: TrainConfig, out: Path, loggers: list[Any], callbacks: list[Any], *, validating: bool,
                  progress: bool, model_summary: bool, preloaded: tuple[Path, dict[str, Any]] | None = None) -> Any:
    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from dcase9.training.module import AtomicCheckpointIO

    options = config.trainer
    try:
        return pl.Trainer(
            accelerator=options.accelerator, devices=options.devices, num_nodes=options.num_nodes,
            strategy=options.strategy, precision=options.precision,  # type: ignore[arg-type]
            max_steps=options.max_steps or -1, max_epochs=-1,
            val_check_interval=config.validation.every_steps if validating else None,
            check_val_every_n_epoch=None, limit_val_batches=1.0 if validating else 0,
            num_sanity_val_steps=config.validation.sanity_steps if validating else 0,
            logger=loggers, callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=progress,
            enable_model_summary=model_summary, log_every_n_steps=options.log_every_n_steps,
            sync_batchnorm=options.sync_batchnorm, gradient_clip_val=options.gradient_clip_val,
            use_distributed_sampler=False, plugins=[AtomicCheckpointIO(preloaded)], default_root_dir=str(out))
    except (MisconfigurationException, ValueError, TypeError) as exc:  # devices, strategy or precision this machine lacks
        raise ConfigError(f"Lightning cannot set up this run: {exc}") from exc


def _write_summary(config: TrainConfig, out: Path, trainer: Any, module: Any, throughput: Any,
                   skipped: dict[str, Any], start_step: int, seconds: float, tokenizer_path: Path,
                   system: SystemFacts | None, status: str, diverged: Any, saved_step: int | None,
                   continued: Any = None) -> TrainResult:
    last = out / LAST_CHECKPOINT
    command, no_command = _infer_command(config, last, system, diverged)
    result = TrainResult(out, last, start_step, int(trainer.global_step), seconds,
                         throughput.summary(module.device), skipped, dict(module.last_validation), command,
                         no_command, tokenizer_path if _is_local_tokenizer(config) else None)
    payload = asdict(result)
    payload.update({"status": status, "steps_this_run": result.steps_this_run,
                    "out_dir": str(out), "last_checkpoint": str(last) if saved_step is not None else None,
                    "last_checkpoint_step": saved_step,
                    "tokenizer": str(result.tokenizer) if result.tokenizer else None,
                    "device": str(module.device), "world_size": trainer.world_size,
                    "precision": config.trainer.precision, "batch_size_per_device": config.data.batch_size,
                    "segment_seconds": config.data.segment_seconds})
    if diverged is not None:
        payload["diverged"] = {"step": diverged.step, "reason": diverged.reason}
    if continued is not None:
        payload["continued_from"] = {"checkpoint": str(continued.path), "step": continued.step}
    write_json_atomic(out / SUMMARY_FILE, payload)
    return result


def _infer_command(config: TrainConfig, last: Path, system: SystemFacts | None, diverged: Any) -> tuple[str, str]:
    """The command that separates with the run's checkpoint, and why there is none when it is empty."""
    if diverged is not None:  # its last good checkpoint is an earlier state, not what this run trained
        return "", f"the run diverged at step {diverged.step}: no command separates with a run that diverged"
    if system is not None:
        return system.infer_command(last, dict(config.weights), config.validation.data), ""
    if config.system is not None:
        # Without the system's facts it is unknown which registry weights inference loads: every local
        # copy the run was given is passed on (`dcase9 infer` takes any registry name).
        return infer_command_line(config.system, last, config.weights, config.validation.data), ""
    return "", ("the configuration names no system that loads the checkpoint: set `system:` (e.g. `system: 1`) "
                "or pass `system=dcase9.api.system_facts(NAME)`")


def infer_command_line(system: str, checkpoint: Path, local_weights: Mapping[str, str], data: str | None) -> str:
    """`dcase9 infer --system SYSTEM --checkpoint CHECKPOINT --data DATA --out ESTIMATES [--weight NAME=PATH ...]`:
    the validation set `data` and a folder beside the run when they are known, placeholders otherwise."""
    out = Path(checkpoint).parent / "estimates" if data else "ESTIMATES_DIR"
    parts = ["dcase9 infer", f"--system {system}", f"--checkpoint {checkpoint}", f"--data {data or 'DATA_DIR'}",
             f"--out {out}"]
    return " ".join(parts + [f"--weight {name}={path}" for name, path in local_weights.items()])


# ------------------------------------------------------------------------------------------------
# Weights: --init, the tokenizer, the query encoder


def check_resumable(last: Path) -> int:
    """Refuse --resume from a damaged or truncated last.ckpt with a message, before anything is written
    (Lightning would fail deep inside `fit` with a long traceback), and from one holding NaN or
    infinite weights or optimizer state (training would go on producing NaN). Returns its global step."""
    from dcase9.models.checkpoints import describe_non_finite, non_finite_keys, read_checkpoint
    from dcase9.training.module import checkpoint_tensors

    try:
        state = read_checkpoint(last)
    except CheckpointError as exc:
        raise CheckpointError(f"--resume: {exc}. The file is damaged or truncated; copy an earlier "
                              f"{last.parent / 'checkpoints'}/step=N.ckpt over it to continue from there, or start "
                              "a new run in another --out") from None
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int) or "state_dict" not in state:
        raise CheckpointError(f"--resume: {last} is not a training checkpoint of dcase9 train (no global_step "
                              "or state_dict)")
    tensors = checkpoint_tensors(state)
    broken = non_finite_keys(tensors)
    if broken:  # written by another tool or an older dcase9: this one never saves such a state
        raise CheckpointError(f"--resume: {last}: {describe_non_finite(broken, len(tensors))} (weights and "
                              f"optimizer state); training would go on from NaN. Copy an earlier "
                              f"{last.parent / 'checkpoints'}/step=N.ckpt over it to continue from there, or start "
                              "a new run in another --out")
    return int(state["global_step"])


def training_weights(config: TrainConfig, *, resume: bool, continued: bool) -> list[str]:
    """The registry weights a run will ask for, as far as they are known before anything is read: the model
    family's, `init` when it names one (a new run), the tokenizer when it names one, and the query encoder's
    source (`auto`: the standalone CLAP when nothing else gives one; an `init` file is asked only once read)."""
    from dcase9.training.models import model_kind
    from dcase9.weights import weight_entries

    registry = weight_entries()
    names = list(model_kind(config.model.kind).weights(config.model_options()))
    starts_from = not resume and not continued and config.init is not None
    if starts_from and config.init in registry:
        names.append(str(config.init))
    if config.query_encoder.tokenizer in registry:
        names.append(config.query_encoder.tokenizer)
    source = config.query_encoder.source
    if not resume and source != QUERY_SOURCE_RANDOM:
        if source == QUERY_SOURCE_AUTO and not continued and config.init is None:
            names.append(CLAP_WEIGHT)
        elif source != QUERY_SOURCE_AUTO and source in registry:
            names.append(source)
    return names


def read_init_checkpoint(name_or_path: str, resolver: Any, *,
                         trust: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of an official-layout checkpoint given as a registry name, a file, or a folder of
    `dcase9 export` (local, or `hf://owner/name[@revision]` through the Hugging Face cache)."""
    from dcase9.hub import resolve_checkpoint
    from dcase9.weights import weight_entries
    from dcase9.models.checkpoints import read_checkpoint, state_dict_of

    if name_or_path in weight_entries():
        path = resolver(name_or_path)
    else:
        path = resolve_checkpoint(name_or_path, offline=resolver.offline)
    return dict(state_dict_of(read_checkpoint(path, trust=trust))), str(path)


def _is_local_tokenizer(config: TrainConfig) -> bool:
    return config.query_encoder.tokenizer != TOKENIZER_WEIGHT


def resolve_tokenizer(config: TrainConfig, resolver: Any, out: Path) -> Path:
    """The tokenizer folder: a tiny one written into the run folder, a registry entry, or a folder."""
    from dcase9.weights import weight_entries

    name = config.query_encoder.tokenizer
    if name in (TINY_TOKENIZER, DEMO_TOKENIZER):
        from dcase9.data.demo import caption_pool
        from dcase9.models.tiny import write_tiny_roberta_tokenizer

        return write_tiny_roberta_tokenizer(out / "tokenizer", words_of=caption_pool() if name == DEMO_TOKENIZER else ())
    if name in weight_entries():
        return Path(resolver(name))
    return Path(name)


def build_query_encoder(config: TrainConfig, resolver: Any, tokenizer_path: Path, init_weights: dict[str, torch.Tensor],
                        init_source: str, *, resume: bool, trust: bool = False) -> tuple[Any, dict[str, torch.Tensor]]:
    """The frozen CLAP encoder, and the laion tensors its source holds that the encoder does not (fixed
    buffers, HTSAT's classifier, training MLPs; see `dcase9.models.official_layout`); see
    `QueryEncoderConfig` for where the weights come from.

    A resumed run builds it with random weights of the right architecture: last.ckpt holds the
    weights (so the 2.3 GB laion file is not read for nothing).
    """
    from dcase9.models.official_layout import laion_extra_keys

    from dcase9.weights import weight_entries
    from dcase9.models.checkpoints import strip_prefix
    from dcase9.models.clap import ClapEncoder, find_laion_prefix, load_roberta_tokenizer, read_laion_clap_weights
    from dcase9.models.tiny import random_clap_model

    options = config.query_encoder
    spec = options.architecture.spec()
    tokenizer = load_roberta_tokenizer(tokenizer_path)
    source = options.source
    if resume or source == QUERY_SOURCE_RANDOM:
        return ClapEncoder(random_clap_model(spec, seed=options.seed), spec.front_end, tokenizer), {}
    if source == QUERY_SOURCE_AUTO and init_weights:
        try:
            prefix = find_laion_prefix(init_weights, source=init_source)
        except CheckpointError:
            prefix = None  # the init checkpoint has no query encoder: the registry's file below
        if prefix is not None:
            laion = strip_prefix(init_weights, prefix)
            return (ClapEncoder.from_laion_weights(laion, tokenizer=tokenizer, spec=spec,
                                                   source=f"{init_source} ({prefix}*)"),
                    carried_tensors(laion_extra_keys(laion), f"{init_source} ({prefix}*)"))
    if source == QUERY_SOURCE_AUTO:
        path = resolver(CLAP_WEIGHT)
    elif source in weight_entries():
        path = resolver(source)
    else:
        path = Path(source)
    laion = read_laion_clap_weights(path, trust=trust)
    return (ClapEncoder.from_laion_weights(laion, tokenizer=tokenizer, spec=spec, source=str(path)),
            carried_tensors(laion_extra_keys(laion), str(path)))


def official_layout_tensors(config: TrainConfig, model: Any, init_net: dict[str, torch.Tensor],
                            clap_extras: dict[str, torch.Tensor], init_source: str = "") -> dict[str, torch.Tensor]:
    """The tensors of the official layout that the trained modules do not hold, under their checkpoint
    keys: the net's (torchlibrosa's STFT kernels) from `--init` (`init_source`) when it had them,
    the CLAP's from its source; rebuilt otherwise. Every checkpoint of the run carries them, so any
    loader accepts it."""
    from dcase9.models.official_layout import complete_laion_extras
    from dcase9.training.module import QUERY_ENCODER_PREFIX

    fixed = model.official_fixed_tensors()
    carried_tensors({k: init_net[k] for k in fixed if k in init_net}, f"{init_source} ({model.state_prefix}*)")
    net = {model.state_prefix + k: init_net.get(k, v) for k, v in fixed.items()}
    options = config.query_encoder
    clap = complete_laion_extras(clap_extras, options.architecture.spec(), seed=options.seed)
    return {**net, **{QUERY_ENCODER_PREFIX + k: v for k, v in clap.items()}}


def carried_tensors(tensors: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """`tensors` taken from `source` into every checkpoint without being loaded into a module (whose
    loading checks its own): refused when not finite, rather than found broken at the first save."""
    from dcase9.models.checkpoints import require_finite

    require_finite(tensors, source=f"{source}, tensors carried into the checkpoints")
    return tensors


def open_validation(config: TrainConfig) -> tuple[Any, list[Any]]:
    if config.validation.data is None:
        return None, []
    from dcase9.data.formats import open_dataset
    from dcase9.training.module import select_validation

    dataset = open_dataset(config.validation.data)
    if not dataset.has_references:
        raise ConfigError(f"validation.data {config.validation.data} is a {dataset.kind.value} set without "
                          "references; validation needs the DCASE validation set (or one in its layout)")
    return dataset, select_validation(dataset, config.validation.limit, config.seed)


# ------------------------------------------------------------------------------------------------
# Small helpers


def _is_rank_zero() -> bool:
    """Before Lightning starts: rank 0 unless a launcher (torchrun, SLURM, Lightning's DDP) says otherwise."""
    import os

    for variable in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        value = os.environ.get(variable)
        if value not in (None, "", "0"):
            return False
    return True


def _tensorboard_available() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


class _DropAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


@contextmanager
def _quiet_lightning(lightning_info: bool) -> Iterator[None]:
    """Lightning's warnings and banners that say nothing to a dcase9 user, silenced for the block only:
    the warnings filters and the loggers' levels and filters are as they were afterwards."""
    loggers = {name: logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")}
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    levels = {name: logger.level for name, logger in loggers.items()}
    advertisements = _DropAdvertisements()
    with warnings.catch_warnings():
        # The frozen CLAP is in eval mode on purpose; Lightning warns about every such module.
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*`isinstance\(treespec, LeafSpec\)`.*")
        rank_zero_log.addFilter(advertisements)
        for logger in loggers.values():
            logger.setLevel(logging.INFO if lightning_info else logging.WARNING)
        try:
            yield
        finally:
            rank_zero_log.removeFilter(advertisements)
            for name, logger in loggers.items():
                logger.setLevel(levels[name])