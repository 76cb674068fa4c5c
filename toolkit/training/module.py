"""The Lightning side of training: the LightningModule, checkpoint saving, progress and throughput.

Importing this module imports Lightning; `dcase9.training.run` does so only when a run starts.

Checkpoints are in the official Lightning layout of the baseline and AudioSep: `state_dict` holds
the separation net under `ss_model.` (its own key names) and the frozen CLAP under
`query_encoder.model.` in laion's key names (converted on saving, converted back on resuming),
so `dcase9 infer --system 1 --checkpoint PATH` and the reference code load them, strictly too: every
tensor of that layout is written, including those no module here holds (torchlibrosa's STFT kernels,
CLAP's fixed buffers, classifier and training MLPs; `dcase9.models.official_layout`). Beside the
weights, the `dcase9` entry holds the run's configuration and what `dcase9 infer` needs: the system
options, and the tokenizer's files when it is not the registry's (plain types only: the file loads
with `torch.load(weights_only=True)`; see `dcase9.models.description`). Files are written atomically.

A run that diverges stops (`NonFiniteTraining`): a non-finite loss before its step is taken, and
non-finite weights or optimizer state before a checkpoint holding them is written, so no
checkpoint on disk is ever replaced by a broken one.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from dcase9.audio import SAMPLE_RATE, resample
from dcase9.data.formats import DataSet, MixtureSpec
from dcase9.data.items import ItemLoader
from dcase9.errors import Terminated
from dcase9.files import JsonlAppender, atomic_output, read_jsonl, remove_partial_files
from dcase9.outputs import file_identity
from dcase9.metrics import Metric, reference_metrics
from dcase9.models.clap import ClapEncoder, laion_to_transformers, transformers_to_laion
from dcase9.models.checkpoints import describe_non_finite, non_finite_keys, strip_prefix
from dcase9.models.description import CHECKPOINT_FORMAT, ENTRY, inference_options
from dcase9.training.config import TrainConfig, config_as_dict
from dcase9.training.data import ClipDataset, SkipLog, TrainSampler, collate_clips
from dcase9.training.mixing import DROPOUT_STREAM, SegmentMixer, step_seed
from dcase9.training.models import TrainableModel
from dcase9.training.schedules import lr_multiplier

QUERY_ENCODER_PREFIX = "query_encoder.model."
FROZEN_ATTRIBUTE = "frozen_parts"


class NonFiniteTraining(Exception):
    """Training stopped being arithmetic on numbers at optimizer step `step` (counted from 1, as
    `step=N.ckpt` holds the state after N steps): `reason` says what was NaN or infinite."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"step {step}: {reason}")
        self.step, self.reason = step, reason


def checkpoint_tensors(checkpoint: dict[str, Any]) -> dict[str, Tensor]:
    """A training checkpoint's weights (`state_dict`) and its optimizers' state tensors, under
    readable keys: what resuming continues from."""
    tensors = dict(checkpoint.get("state_dict") or {})
    for k, optimizer in enumerate(checkpoint.get("optimizer_states") or []):
        for parameter, values in (optimizer.get("state") or {}).items():
            for name, value in values.items():
                tensors[f"optimizer_states[{k}].state[{parameter}].{name}"] = value
    return tensors


class SeparationTraining(pl.LightningModule):
    """Trains a `TrainableModel` with the baseline's recipe: SegmentMixer mixtures from batches of
    clean clips, CLAP text conditions, the model's loss, and step-wise validation."""

    def __init__(self, config: TrainConfig, model: TrainableModel, query_encoder: ClapEncoder, *,
                 train_set: ClipDataset, sampler: TrainSampler, validation_set: DataSet | None = None,
                 validation_specs: list[MixtureSpec] | None = None, checkpoint_info: dict[str, Any] | None = None,
                 official_tensors: dict[str, Tensor] | None = None):
        super().__init__()
        self.config = config
        self.trainable = model
        attach(self, model.state_prefix, model.net)  # its state dict is then `ss_model.*` as is
        if model.frozen is not None:
            model.frozen.requires_grad_(False)
            model.frozen.eval()  # Lightning keeps each module's mode; `train()` below keeps this one
            self.add_module(FROZEN_ATTRIBUTE, model.frozen)
        self.query_encoder = query_encoder
        self.mixer = SegmentMixer(config.mixing.max_mix_num, config.mixing.lower_db, config.mixing.higher_db)
        self.train_set, self.sampler = train_set, sampler
        self.validation_set, self.validation_specs = validation_set, validation_specs or []
        self.checkpoint_info = checkpoint_info or {}
        # Tensors of the official layout no module here holds (torchlibrosa's STFT kernels, CLAP's
        # fixed buffers, classifier and training MLPs): written into every checkpoint.
        self.official_tensors = dict(official_tensors or {})
        self.skip_log = SkipLog()
        self.total_skips: SkipLog | None = None
        self._query_cache: dict[str, Tensor] = {}
        self._validation_sums: Tensor | None = None
        self._validation_metrics: list[Metric] = []
        self.last_validation: dict[str, float] = {}

    # -- data -------------------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        # Lightning restores the step counter before it asks for the loader, so a resumed run
        # continues the data stream where the interrupted one stopped.
        self.sampler.start_batch = self.trainer.global_step
        workers = self.config.data.num_workers
        return DataLoader(self.train_set, batch_size=self.config.data.batch_size, sampler=self.sampler,
                          num_workers=workers, collate_fn=collate_clips, drop_last=True,
                          pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                          prefetch_factor=4 if workers > 0 else None)

    def val_dataloader(self) -> DataLoader | list:
        if self.validation_set is None or not self.validation_specs:
            return []
        items = ValidationItems(self.validation_set, self.validation_specs)
        return DataLoader(items, batch_size=self.config.validation.batch_size, sampler=ShardSampler(len(items)),
                          num_workers=0, collate_fn=list)

    # -- training ---------------------------------------------------------------------------------

    def conditions(self, captions: list[str]) -> Tensor:
        """CLAP text embeddings as inference computes them (eval mode), in float32 whatever the
        training precision."""
        with torch.autocast(self.device.type, enabled=False):
            return self.query_encoder.encode_text(captions)

    def training_conditions(self, captions: list[str]) -> Tensor:
        """The conditions of this training step: with the text tower's dropout when
        `query_encoder.training_dropout` says so (the reference's training), drawn from the global
        RNG seeded for this step and rank (and restored afterwards), so a resumed run draws the same."""
        if not self.config.query_encoder.training_dropout:
            return self.conditions(captions)
        seed = step_seed(self.config.seed, self.global_step, self.global_rank, DROPOUT_STREAM)
        with seeded_global_rng(seed, self.device), torch.autocast(self.device.type, enabled=False):
            return self.query_encoder.encode_text(captions, dropout=True)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        self.skip_log.add(batch["skipped"])
        segments = batch["waveform"]
        generator = torch.Generator().manual_seed(step_seed(self.config.seed, self.global_step, self.global_rank))
        mixture, target = self.mixer(segments, generator)
        captions = batch["caption"]
        loss, parts = self.trainable.training_loss(mixture, self.training_conditions(captions), target, captions)
        # Checked before the step is taken, so the weights stay those of the last good step. One
        # scalar read per step (and, with several processes, one tiny all-reduce: they stop together).
        finite = bool(torch.isfinite(loss.detach()).all())
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            reason = f"the loss is {float(loss.detach())}" if not finite else "another process's loss is not finite"
            raise NonFiniteTraining(self.global_step + 1, reason)
        size = segments.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=size)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=size)
        clips_seen = (self.global_step + 1) * size * self.trainer.world_size
        self.log("train/epoch", clips_seen / self.sampler.epoch_length, batch_size=size)
        self.log("data/skipped", float(self.skip_log.total), batch_size=size)
        return loss

    def train(self, mode: bool = True) -> SeparationTraining:
        super().train(mode)
        if self.trainable.frozen is not None:
            self.trainable.frozen.eval()  # pretrained parts keep their inference behaviour (batch norm, dropout)
        return self

    def configure_optimizers(self) -> dict[str, Any]:
        options = self.config.optimizer
        optimizer_class = torch.optim.AdamW if options.name == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(list(self.trainable.trainable_parameters()), lr=options.lr,
                                    betas=tuple(options.betas), eps=options.eps,
                                    weight_decay=options.weight_decay, amsgrad=options.amsgrad)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(self.config.schedule))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # -- validation -------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._validation_metrics = validation_metrics()
        self._validation_sums = torch.zeros(len(self._validation_metrics) + 1, dtype=torch.float64,
                                            device=self.device)

    def validation_step(self, batch: list[dict[str, Any]], batch_idx: int) -> None:
        assert self._validation_sums is not None
        # Clips run in groups of equal length: padding them to one length would change the metrics.
        groups: dict[int, list[dict[str, Any]]] = {}
        for item in batch:
            groups.setdefault(item["mixture"].shape[-1], []).append(item)
        for items in groups.values():
            mixture = torch.stack([i["mixture"] for i in items]).to(self.device)
            reference = torch.stack([i["reference"] for i in items]).to(self.device)
            estimate = self.separate_at_16k(mixture, [i["query"] for i in items])
            for k, metric in enumerate(self._validation_metrics):
                self._validation_sums[k] += metric.compute(reference, estimate, mixture).sum()
            self._validation_sums[-1] += len(items)

    def separate_at_16k(self, mixture: Tensor, queries: list[str]) -> Tensor:
        """Separate 16 kHz mixtures at the model's rate and bring the estimates back to 16 kHz."""
        missing = [q for q in dict.fromkeys(queries) if q not in self._query_cache]
        if missing:
            for query, embedding in zip(missing, self.conditions(missing), strict=True):
                self._query_cache[query] = embedding
        conditions = torch.stack([self._query_cache[q] for q in queries])
        rate = self.trainable.sample_rate
        estimate = self.trainable.separate(resample(mixture, SAMPLE_RATE, rate), conditions).float()
        estimate = resample(estimate, rate, SAMPLE_RATE)
        length = mixture.shape[-1]
        if estimate.shape[-1] != length:  # resampling rounds lengths
            estimate = torch.nn.functional.pad(estimate, (0, max(0, length - estimate.shape[-1])))[..., :length]
        return estimate

    def on_validation_epoch_end(self) -> None:
        if self._validation_sums is None:
            return
        sums = self.trainer.strategy.reduce(self._validation_sums, reduce_op="sum")
        count = float(sums[-1])
        if count and not self.trainer.sanity_checking:
            means = {f"val/{metric.name}": float(sums[k]) / count
                     for k, metric in enumerate(self._validation_metrics)}
            self.log_dict(means, prog_bar=True)
            self.last_validation = {**means, "val/mixtures": count, "step": self.global_step}
        self._validation_sums = None

    def on_train_end(self) -> None:
        # Every process reaches this point together on a normal finish: collect their skip logs.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            logs: list[SkipLog | None] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(logs, self.skip_log)
            total = SkipLog()
            for log in logs:
                if log is not None:
                    total.merge(log)
            self.total_skips = total
        else:
            self.total_skips = self.skip_log

    def gathered_skips(self) -> SkipLog:
        """All processes' skipped clips after a normal finish; this process's after an interruption."""
        return self.total_skips if self.total_skips is not None else self.skip_log

    # -- checkpoints ------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Every process checks (their weights are the same): a refusal on one alone would leave the
        # others waiting. One pass over what is about to be written anyway.
        tensors = checkpoint_tensors(checkpoint)
        broken = non_finite_keys(tensors)
        if broken:
            raise NonFiniteTraining(self.global_step, "after it, " + describe_non_finite(broken, len(tensors)))
        state = checkpoint["state_dict"]
        clap = {key[len(QUERY_ENCODER_PREFIX):]: state.pop(key) for key in list(state)
                if key.startswith(QUERY_ENCODER_PREFIX)}
        state.update({QUERY_ENCODER_PREFIX + key: value for key, value in transformers_to_laion(clap).items()})
        for key in [k for k in state if k.startswith(FROZEN_ATTRIBUTE + ".")]:
            del state[key]  # pretrained parts that are not trained come from their own files
        for key, value in self.official_tensors.items():  # every tensor of the official layout
            state.setdefault(key, value)
        options = inference_options(self.trainable.system_options(), self.config.query_encoder.architecture)
        checkpoint[ENTRY] = {"format": CHECKPOINT_FORMAT, "config": config_as_dict(self.config),
                             "model_kind": self.config.model.kind, "sample_rate": self.trainable.sample_rate,
                             "system_options": options, **self.checkpoint_info}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k in self.official_tensors]:  # kept for the next checkpoints
            self.official_tensors[key] = state.pop(key)
        laion = strip_prefix(state, QUERY_ENCODER_PREFIX)
        for key in [k for k in state if k.startswith(QUERY_ENCODER_PREFIX)]:
            del state[key]
        state.update({QUERY_ENCODER_PREFIX + k: v for k, v in laion_to_transformers(laion).items()})
        # Fixed buffers the laion layout leaves out, and the frozen parts: from the live module.
        for key, value in self.state_dict().items():
            if key not in state and (key.startswith(QUERY_ENCODER_PREFIX) or key.startswith(FROZEN_ATTRIBUTE + ".")):
                state[key] = value


@contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """The block draws from the global generators of the CPU and of `device` (CUDA) seeded with
    `seed`; their states are restored afterwards. (Dropout has no generator argument.) Other
    accelerators' generators are left unseeded: their draws are not reproducible."""
    cuda = device.type == "cuda"
    index = device.index if device.index is not None else torch.cuda.current_device() if cuda else 0
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def validation_metrics() -> list[Metric]:
    """What validation logs as `val/<name>`: the registered reference-based metrics that tables show
    (SDR, SDRi, SI-SDR, and any registered later), computed as `dcase9 score` computes them."""
    return [metric for metric in reference_metrics() if metric.shown]


def attach(parent: nn.Module, prefix: str, child: nn.Module) -> None:
    """Register `child` under the dotted `prefix` ("ss_model." or "ss_model.mask_net."), creating
    empty container modules on the way, so that its state-dict keys start with `prefix`."""
    names = prefix.rstrip(".").split(".")
    for name in names[:-1]:
        if not hasattr(parent, name):
            parent.add_module(name, nn.Module())
        parent = getattr(parent, name)
    parent.add_module(names[-1], child)


# -- validation data ------------------------------------------------------------------------------


class ValidationItems(Dataset):
    """Validation mixtures built exactly as the official evaluator builds them."""

    def __init__(self, dataset: DataSet, specs: list[MixtureSpec]):
        self.loader = ItemLoader(dataset)
        self.specs = specs

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.loader.load(self.specs[index])
        return {"mixture": torch.from_numpy(item.mixture), "reference": torch.from_numpy(item.reference),
                "query": item.spec.query}


class ShardSampler(Sampler[int]):
    """Indices `rank, rank + world, ...`: each process validates its share, nothing twice."""

    def __init__(self, length: int) -> None:
        self.length = length

    def _shard(self) -> range:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return range(torch.distributed.get_rank(), self.length, torch.distributed.get_world_size())
        return range(self.length)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._shard())

    def __len__(self) -> int:
        return len(self._shard())


def select_validation(dataset: DataSet, limit: int | None, seed: int) -> list[MixtureSpec]:
    """All mixtures, or a fixed random subset of `limit` of them (in the set's order)."""
    mixtures = list(dataset.mixtures)
    if limit is None or limit >= len(mixtures):
        return mixtures
    chosen = np.sort(np.random.default_rng([seed, 11]).choice(len(mixtures), size=limit, replace=False))
    return [mixtures[int(i)] for i in chosen]


# -- checkpoint files -----------------------------------------------------------------------------


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temporary file and a rename: an interrupted save
    never leaves a truncated `last.ckpt` (Lightning's own writes the destination in place).
    `preloaded` (path, checkpoint): what loading that path gives, already read and converted
    (`--resume-from`, `dcase9.training.reference`)."""

    def __init__(self, preloaded: tuple[Path, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.preloaded = preloaded

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.preloaded is not None and Path(path).resolve() == self.preloaded[0]:
            return self.preloaded[1]
        return super().load_checkpoint(path, *args, **kwargs)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_output(path) as tmp:
            torch.save(checkpoint, tmp)


WRITTEN_LEDGER = "written.jsonl"  # the step checkpoints this run wrote: the only ones it prunes


class StepCheckpoints(Callback):
    """`checkpoints/step=<N>.ckpt` every `every_steps` steps (the baseline's name and cadence) and
    `last.ckpt` every `last_every_steps` steps, both at the final step; `last.ckpt` also when the
    run is interrupted (Ctrl-C, SIGTERM) in a single process. `saved_step` is the step of the
    last.ckpt on disk (None: there is none), the last good state when a run diverges."""

    def __init__(self, out_dir: Path, every_steps: int | None, last_every_steps: int, keep: int | None) -> None:
        self.out_dir, self.every, self.last_every, self.keep = Path(out_dir), every_steps, last_every_steps, keep
        self.folder = self.out_dir / "checkpoints"
        self.interrupted_at: int | None = None  # the step last.ckpt was saved at on an interruption
        self.terminated = False  # the interruption was a SIGTERM
        self.saved_step: int | None = None
        self.diverged: NonFiniteTraining | None = None  # found by the save on an interruption

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.ckpt"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.folder.mkdir(parents=True, exist_ok=True)
            remove_partial_files(self.folder)
            remove_partial_files(self.out_dir)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After a resume's restore: last.ckpt holds the state at the step the run continues from.
        self.saved_step = trainer.global_step if self.last_path.is_file() else None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        final = trainer.max_steps is not None and step >= trainer.max_steps
        step_file = None
        if self.every is not None and (step % self.every == 0 or final):
            step_file = self.folder / f"step={step}.ckpt"
            trainer.save_checkpoint(step_file, weights_only=False)
            self._prune(trainer)
        if step_file is not None:
            if trainer.is_global_zero:  # the same state: a link, not a second serialisation
                _link_or_copy(step_file, self.last_path)
            self.saved_step = step
        elif step % self.last_every == 0 or final:
            trainer.save_checkpoint(self.last_path, weights_only=False)  # every process: it synchronises
            self.saved_step = step

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Only one process: with several, a save would wait at a barrier the others never reach.
        interrupted = isinstance(exception, KeyboardInterrupt) or type(exception).__name__ == "SIGTERMException"
        if interrupted and trainer.world_size == 1 and trainer.global_step > 0:
            try:
                trainer.save_checkpoint(self.last_path, weights_only=False)
            except NonFiniteTraining as diverged:  # nothing written; Lightning goes on shutting down
                self.diverged = diverged
                return
            self.interrupted_at = self.saved_step = trainer.global_step
            self.terminated = isinstance(exception, Terminated)

    @property
    def ledger_path(self) -> Path:
        return self.folder / WRITTEN_LEDGER

    def _prune(self, trainer: pl.Trainer) -> None:
        """Record the step checkpoint just written; delete the oldest beyond `keep`, but only files the
        ledger vouches for (written by this run, of the recorded size and modification time)."""
        if not trainer.is_global_zero:
            return
        written = self.folder / f"step={trainer.global_step}.ckpt"
        with JsonlAppender(self.ledger_path) as ledger:
            ledger.append([{"file": written.name, **(file_identity(written) or {})}])
        if self.keep is None:
            return
        records = {r.get("file"): r for r in read_jsonl(self.ledger_path).records}
        ours = sorted((p for p in self.folder.glob("step=*.ckpt") if p.name in records and not p.is_symlink()
                       and file_identity(p) == {k: records[p.name].get(k) for k in ("size", "mtime_ns")}),
                      key=lambda p: int(p.stem.split("=")[1]))
        for old in ours[: -self.keep]:
            old.unlink(missing_ok=True)


def _link_or_copy(source: Path, destination: Path) -> None:
    """`destination` becomes the same content as `source`, atomically (a hard link where possible)."""
    with atomic_output(destination) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


# -- progress and throughput ----------------------------------------------------------------------


class StepProgressBar(TQDMProgressBar):
    """Lightning's bar, counting optimizer steps of the whole run (the data stream has no epochs). A
    resumed run's bar starts at the step it continues from, and its rate and remaining time count
    only the steps this run took."""

    def on_train_start(self, trainer: pl.Trainer, *_: Any) -> None:
        super().on_train_start(trainer)
        # Lightning skips on_train_epoch_start when it resumes inside an epoch (always, here): set the
        # bar up now, after the restore, with the step counter the run continues from.
        self._start_at_step(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        self._start_at_step(trainer)

    def _start_at_step(self, trainer: pl.Trainer) -> None:
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None)
        # tqdm's rate is (n - initial) / elapsed: the steps taken since this start, not since step 0.
        bar.initial = bar.n = trainer.global_step
        bar.set_description("training")
        bar.refresh()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self._should_update(step, self.train_progress_bar.total):
            self.train_progress_bar.n = step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)  # one refresh below
            self.train_progress_bar.refresh()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # A run that stops (diverged, failed) ends the bar's line before the message that says why.
        for bar in (self._train_progress_bar, self._val_progress_bar):
            if bar is not None:
                bar.close()


class PlainStepProgress(Callback):
    """The training progress as plain lines, for logs (standard output is not a terminal): one a tenth of
    the way and one every half minute, with this run's steps, rate and loss; never `\r` redraws."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task = 0
        self._start = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from rich.console import Console

        from dcase9.progress import PlainProgress

        self._start = trainer.global_step
        total = trainer.max_steps - self._start if trainer.max_steps and trainer.max_steps > 0 else None
        label = "training" + (f" (from step {self._start})" if self._start else "")
        self._progress = PlainProgress("steps", console=Console(file=sys.stdout, soft_wrap=True))
        self._task = self._progress.add_task(label, total=total)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._progress is None:
            return
        loss = trainer.callback_metrics.get("train/loss")
        extra = f"loss {float(loss):.4g}" if loss is not None else None
        self._progress.update(self._task, completed=trainer.global_step - self._start, extra=extra)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)  # a run that stops ends its last line too


class Throughput(Callback):
    """Steps/s and clips/s of training, data loading included (the first `warm_up` steps and the
    time spent validating excluded), and the peak memory: the accelerator's allocator peak on
    CUDA, the process's peak RSS otherwise."""

    def __init__(self, warm_up: int = 3) -> None:
        self.warm_up = warm_up
        self.steps = 0
        self.clips = 0
        self.seconds = 0.0
        self._last_end: float | None = None

    def _now(self, pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = self._now(pl_module)
        previous, self._last_end = self._last_end, now
        if previous is None:
            return
        if self.warm_up > 0:
            self.warm_up -= 1
            return
        self.steps += 1
        self.clips += int(batch["waveform"].shape[0]) * trainer.world_size
        self.seconds += now - previous

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = self._now(pl_module)  # the next step is timed from here

    def summary(self, device: torch.device) -> dict[str, Any]:
        result: dict[str, Any] = {"measured_steps": self.steps}
        if self.seconds > 0:
            result.update(steps_per_second=self.steps / self.seconds, clips_per_second=self.clips / self.seconds)
        if device.type == "cuda":
            result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            result["memory_kind"] = "cuda max_memory_allocated"
        else:
            result["peak_memory_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            result["memory_kind"] = "process peak RSS"
        return result

