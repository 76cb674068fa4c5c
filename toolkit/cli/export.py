"""`dcase9 export`: a trained system as a shareable folder, optionally uploaded to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from dcase9.cli._common import app, console, friendly_errors, parse_weight_options, system_settings


@app.command("export")
@friendly_errors
def export_command(
    source: Annotated[Path, typer.Argument(
        help="A checkpoint, the folder of a `dcase9 train` run (its last.ckpt), or a folder of `dcase9 export`.",
        show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder to write (replaced as a whole).")],
    report: Annotated[list[Path], typer.Option(
        help="A `dcase9 score` report folder whose results the model card gives (repeatable).")] = [],  # noqa: B006
    system: Annotated[Optional[str], typer.Option(
        "--system", "-s", help="The system that loads it, for a checkpoint that does not say (made elsewhere).")] = None,
    system_config: Annotated[Optional[Path], typer.Option(
        help="YAML of system settings over those the checkpoint carries (as for `dcase9 infer`).")] = None,
    set_values: Annotated[list[str], typer.Option(
        "--set", help="KEY.PATH=VALUE for one of the system's settings, after --system-config (repeatable).")]
        = [],  # noqa: B006
    weight: Annotated[list[str], typer.Option(
        help="NAME=PATH for a registry weight: the stock CLAP to compare the query encoder with, or the tokenizer "
             "folder of a checkpoint made elsewhere (repeatable).")] = [],  # noqa: B006
    offline: Annotated[bool, typer.Option(help="Never download (the query encoder is then included unless the "
                                               "stock CLAP is cached or given).")] = False,
    trust_checkpoint: Annotated[bool, typer.Option(
        help="Unpickle the checkpoint fully (runs code it contains): only for files you trust.")] = False,
    license: Annotated[str, typer.Option(
        "--license", help="The card's license (a Hub license id, e.g. mit, cc-by-4.0; default: other, not stated).")]
        = "other",
    dataset: Annotated[list[str], typer.Option(
        help="A Hub dataset id it was trained on, for the card's metadata (repeatable).")] = [],  # noqa: B006
    base_model: Annotated[Optional[str], typer.Option(
        help="The Hub model it was fine-tuned from, for the card's metadata (default: the run's --init "
             "hf://owner/name, if any).")] = None,
    push_to_hub: Annotated[Optional[str], typer.Option(
        "--push-to-hub", help="Upload the folder to this Hugging Face model repository (owner/name), created if "
                              "needed, with the token of `huggingface-cli login` or HF_TOKEN.")] = None,
    dry_run: Annotated[bool, typer.Option(
        help="With --push-to-hub: write the folder and list what would be uploaded, upload nothing.")] = False,
    private: Annotated[bool, typer.Option(help="With --push-to-hub: create the repository private.")] = False,
) -> None:
    """Write a trained system as a folder anyone can load: model.safetensors (what inference needs),
    config.json, the tokenizer when it is not roberta-base, a model card (README.md) and checksums.

    Load it with `dcase9 infer --system NAME --checkpoint DIR` (or hf://owner/name once pushed).

    Examples:
      dcase9 export runs/system1 --out share/system1 --report reports/system1-validation
      dcase9 export runs/system1 --out share/system1 --push-to-hub me/dcase9-system1 --dry-run
    """
    from dcase9.errors import ConfigError
    from dcase9.export import export_model
    from dcase9.hub import push_folder
    from dcase9.models.exported import EXPORT_PATTERNS
    from dcase9.systems import system_card

    if dry_run and push_to_hub is None:
        raise ConfigError("--dry-run lists what --push-to-hub would upload: name the repository with --push-to-hub")
    result = export_model(source, out, describe_system=system_card, system=system,
                          system_options=system_settings(system_config, set_values),
                          reports=report, weights=parse_weight_options(weight), offline=offline,
                          trust_checkpoint=trust_checkpoint, license=license, datasets=dataset,
                          base_model=base_model, repo=push_to_hub)
    total = sum(result.files.values())
    console.print(f"wrote {escape(str(result.out))}: {len(result.files)} files, {total / 1e6:.1f} MB; "
                  f"{result.tensors} tensors of {escape(str(result.checkpoint))} for system '{result.system}'; "
                  f"query encoder: {_origin(result.query_encoder)}; tokenizer: {_origin(result.tokenizer)}",
                  highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    if push_to_hub is None:
        console.print(f"load it with:\n  dcase9 infer --system {result.system} --checkpoint {escape(str(out))} "
                      "--data DATA --out ESTIMATES", highlight=False, soft_wrap=True)
        return
    plan = push_folder(out, push_to_hub, dry_run=dry_run, private=private, replaces=EXPORT_PATTERNS)
    if dry_run:
        console.print(f"would upload to https://huggingface.co/{plan.repo} (dry run: nothing uploaded):",
                      highlight=False)
        for name, size in plan.files.items():
            console.print(f"  {escape(name)}  ({size} bytes)", highlight=False)
        return
    console.print(f"uploaded {len(plan.files)} files to https://huggingface.co/{plan.repo}"
                  + (f" ({plan.commit_url})" if plan.commit_url else ""), highlight=False, soft_wrap=True)
    console.print(f"load it with:\n  dcase9 infer --system {result.system} --checkpoint hf://{plan.repo} "
                  "--data DATA --out ESTIMATES", highlight=False, soft_wrap=True)


def _origin(part: str) -> str:
    return "in the folder" if part == "included" else f"the registry's {part}"
