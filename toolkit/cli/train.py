"""`dcase9 train`: train a separation model (Systems 1, 3 and 4, the baseline recipe, AudioSep fine-tuning)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dcase9.cli._common import app, console, friendly_errors
from dcase9.cli._tables import print_table

_DATA = "Data"
_RUN = "Run"
_SCALE = "Devices and precision"


def parse_data_option(value: str) -> dict[str, Any]:
    """`FILE` or `FILE@WEIGHT` as a datafile entry."""
    from dcase9.errors import ConfigError

    path, sep, weight = value.rpartition("@")
    if sep and path:
        try:
            return {"path": path, "weight": float(weight)}
        except ValueError:
            pass  # an '@' that is part of the path
    if not value:
        raise ConfigError("--data expects a caption-audio JSON file")
    return {"path": value}


def parse_devices(value: str) -> int | str | list[int]:
    """`8` -> 8, `0,1` -> [0, 1], `auto` / `-1` as Lightning reads them."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if "," in text:
        return [int(part) for part in text.split(",") if part.strip()]
    return text


@app.command("train")
@friendly_errors
def train_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: config, checkpoints, logs.")],
    preset: Annotated[Optional[str], typer.Option(
        help="Starting configuration: baseline, system1, system3, system4, system4-audiosep, demo "
             "(default: the config file's `extends:`, else baseline).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML overriding the preset.")] = None,
    data: Annotated[list[str], typer.Option(
        "--data", "-d", help="Caption-audio JSON in the baseline format; FILE@WEIGHT weights it (repeatable; "
                             "replaces the configured list).", rich_help_panel=_DATA)] = [],  # noqa: B006
    validation: Annotated[Optional[Path], typer.Option(
        help="DCASE-format validation folder, scored with the official metrics during training.",
        rich_help_panel=_DATA)] = None,
    validation_limit: Annotated[Optional[int], typer.Option(
        help="Validate on a fixed random subset of this many mixtures.", rich_help_panel=_DATA)] = None,
    validation_every: Annotated[Optional[int], typer.Option(
        help="Validate every N steps.", rich_help_panel=_DATA)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Train for this many optimizer steps in total.",
                                                 rich_help_panel=_RUN)] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Train for this many epochs of the weighted data.",
                                                    rich_help_panel=_RUN)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Clips per batch per device.", rich_help_panel=_RUN)] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.", rich_help_panel=_RUN)] = None,
    num_workers: Annotated[Optional[int], typer.Option(help="Data-loading processes per device.",
                                                       rich_help_panel=_RUN)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of data order, crops, mixing and initial weights.",
                                                rich_help_panel=_RUN)] = None,
    init: Annotated[Optional[str], typer.Option(
        help="Start from an official-layout checkpoint: a file, a registry name (baseline-checkpoint, "
             "audiosep-checkpoint), or a folder of `dcase9 export` (DIR or hf://owner/name[@revision]).",
        rich_help_panel=_RUN)] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last.ckpt.",
                                         rich_help_panel=_RUN)] = False,
    resume_from: Annotated[Optional[Path], typer.Option(
        "--resume-from", help="Continue a run of the official training code (baseline, AudioSep) from its "
                              "Lightning checkpoint with optimizer state, in a new --out.",
        rich_help_panel=_RUN)] = None,
    trust_checkpoint: Annotated[bool, typer.Option(
        help="Unpickle the --init and query-encoder checkpoints fully (runs code they contain): only for files "
             "you trust.", rich_help_panel=_RUN)] = False,
    devices: Annotated[Optional[str], typer.Option(help="Devices per node: N, a list 0,1, or auto.",
                                                   rich_help_panel=_SCALE)] = None,
    num_nodes: Annotated[Optional[int], typer.Option(help="Nodes (multi-node DDP).", rich_help_panel=_SCALE)] = None,
    strategy: Annotated[Optional[str], typer.Option(help="Lightning strategy: auto, ddp, ddp_spawn, ...",
                                                    rich_help_panel=_SCALE)] = None,
    accelerator: Annotated[Optional[str], typer.Option(help="auto, cpu, gpu, mps.", rich_help_panel=_SCALE)] = None,
    precision: Annotated[Optional[str], typer.Option(help="fp32, bf16 or fp16 (mixed), or a Lightning string.",
                                                     rich_help_panel=_SCALE)] = None,
    weight: Annotated[list[str], typer.Option(help="NAME=PATH: a local file or folder for a registry weight "
                                              "(repeatable).")] = [],  # noqa: B006
    offline: Annotated[Optional[bool], typer.Option(help="Never download; use local files and caches only.")] = None,
    set_values: Annotated[list[str], typer.Option(
        "--set", help="KEY.PATH=VALUE for any configuration key, e.g. --set mixing.lower_db=-5 (repeatable).")] = [],  # noqa: B006
    print_config: Annotated[bool, typer.Option(help="Print the assembled configuration and exit.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    lightning_info: Annotated[bool, typer.Option(
        "--lightning-info", help="Also show Lightning's own messages: the devices it found (GPU/TPU available), "
                                 "its settings and the model summary table.")] = False,
) -> None:
    """Train a language-queried separation model with the baseline recipe (Lightning; multi-GPU with --devices).

    A run whose loss or weights become NaN or infinite stops with exit 1, naming the step; its
    checkpoints keep the last good state.

    Examples:
      dcase9 train --preset system1 --data fsd50k_gpt4/augmented.json --data clotho_dev.json
          --validation data/validation --out runs/system1 --devices 8
      dcase9 train --out runs/system1 --resume
      dcase9 train --preset baseline --data ... --resume-from official/step=20000.ckpt --out runs/continued
      dcase9 train --preset demo --data demo-data/train/train.json --out runs/demo
    """
    from dcase9.api import train as run_training
    from dcase9.api import train_config
    from dcase9.cli._common import parse_weight_options
    from dcase9.config import parse_assignment
    from dcase9.errors import ConfigError
    from dcase9.training.config import dump_train_config
    from dcase9.training.run import RESUME_OR_RESUME_FROM, TrainingInterrupted

    overrides = _flag_overrides(data=data, validation=validation, validation_limit=validation_limit,
                                validation_every=validation_every, steps=steps, epochs=epochs, batch_size=batch_size,
                                lr=lr, num_workers=num_workers, seed=seed, init=init, devices=devices,
                                num_nodes=num_nodes, strategy=strategy, accelerator=accelerator, precision=precision,
                                weight={k: str(v) for k, v in parse_weight_options(weight).items()}, offline=offline)
    overrides += [parse_assignment(text) for text in set_values]
    if resume and resume_from is not None:
        raise ConfigError(RESUME_OR_RESUME_FROM)
    if print_config:
        settings = train_config(out, preset=preset, config=config, overrides=overrides, resume=resume)
        console.print(dump_train_config(settings), highlight=False, markup=False, end="", soft_wrap=True)  # YAML
        return
    try:
        result = run_training(out, preset=preset, config=config, overrides=overrides, resume=resume,
                              progress=progress, trust_checkpoint=trust_checkpoint, resume_from=resume_from,
                              lightning_info=lightning_info)
    except TrainingInterrupted as stop:
        how = "terminated" if stop.terminated else "interrupted"
        console.print(f"[yellow]{how} at step {stop.step}: saved {stop.checkpoint}; continue with[/]\n"
                      f"  dcase9 train --out {out} --resume", highlight=False)
        raise typer.Exit(143 if stop.terminated else 130) from None
    if result.rank == 0:  # with DDP every process runs this command
        _print_result(result)


def _flag_overrides(**flags: Any) -> list[dict[str, Any]]:
    """The command-line flags as configuration layers (only the flags given)."""
    layers: list[dict[str, Any]] = []

    def add(value: Any, *path: str) -> None:
        if value is None or value == [] or value == {}:
            return
        for key in reversed(path):
            value = {key: value}
        layers.append(value)

    add([parse_data_option(v) for v in flags["data"]], "data", "datafiles")
    add(str(flags["validation"]) if flags["validation"] else None, "validation", "data")
    add(flags["validation_limit"], "validation", "limit")
    add(flags["validation_every"], "validation", "every_steps")
    if flags["steps"] is not None:
        layers.append({"trainer": {"max_steps": flags["steps"], "max_epochs": None}})
    add(flags["epochs"], "trainer", "max_epochs")
    add(flags["batch_size"], "data", "batch_size")
    add(flags["lr"], "optimizer", "lr")
    add(flags["num_workers"], "data", "num_workers")
    add(flags["seed"], "seed")
    add(flags["init"], "init")
    add(parse_devices(flags["devices"]) if flags["devices"] is not None else None, "trainer", "devices")
    add(flags["num_nodes"], "trainer", "num_nodes")
    add(flags["strategy"], "trainer", "strategy")
    add(flags["accelerator"], "trainer", "accelerator")
    add(flags["precision"], "trainer", "precision")
    add(flags["weight"], "weights")
    add(flags["offline"], "offline")
    return layers


def _print_result(result: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from dcase9.metrics import registered_metrics

    table = Table(title="Training run", show_header=False)
    table.add_column("", no_wrap=True)
    table.add_column("", no_wrap=True)  # a folder, a checkpoint: whole
    table.add_row("folder", escape(str(result.out_dir)))
    # A run that continued another (--resume, --resume-from) did part of the steps: its own, and where it stands.
    steps = str(result.steps_this_run)
    if result.start_step:
        steps += f" (from step {result.start_step} to {result.global_step})"
    table.add_row("steps", steps)
    table.add_row("time", f"{result.seconds:.1f} s")
    speed = result.throughput
    if "steps_per_second" in speed:
        table.add_row("throughput", f"{speed['steps_per_second']:.3f} steps/s, {speed['clips_per_second']:.2f} clips/s")
    if "peak_memory_gib" in speed:
        table.add_row("peak memory", f"{speed['peak_memory_gib']:.2f} GiB ({speed['memory_kind']})")
    for metric in registered_metrics():
        name = f"val/{metric.name}"
        if name in result.validation:
            table.add_row(name, f"{result.validation[name]:.3f} {metric.unit}".rstrip())
    skipped = result.skipped.get("skipped_draws", 0)
    reasons = ", ".join(f"{n['draws']} {r}" for r, n in result.skipped.get("by_reason", {}).items())
    table.add_row("skipped clips", f"{skipped}" + (f" ({reasons})" if reasons else ""))
    table.add_row("checkpoint", escape(str(result.last_checkpoint)))
    print_table(table, console)
    if result.infer_command:
        console.print(f"separate with:\n  {result.infer_command}", highlight=False, soft_wrap=True)
    else:
        console.print(f"no infer command: {escape(result.no_infer_command)}", highlight=False, soft_wrap=True)
