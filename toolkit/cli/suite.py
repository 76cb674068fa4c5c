"""`dcase9 suite`: AudioSep's six LASS benchmarks with one system, and the table its README prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from dcase9.cli._common import (RESUMES, QueryColumnOpt, app, console, friendly_errors, parse_weight_options,
                                system_settings, tune_process)
from dcase9.cli.run import DeviceOpt


@app.command()
@friendly_errors(on_interrupt=RESUMES)
def suite(
    evaluation_dir: Annotated[Path, typer.Argument(
        help="AudioSep's evaluation folder: metadata/<name>_eval.csv and data/<name>/.", show_default=False)],
    system: Annotated[str, typer.Option("--system", "-s", help="System name (see `dcase9 systems`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results: <name>/estimates, <name>/report, summary.json.")],
    only: Annotated[list[str], typer.Option(
        help="Run only this benchmark (repeatable): vggsound, music, esc50, audioset, audiocaps, clotho.")] = [],  # noqa: B006
    query_column: QueryColumnOpt = None,
    checkpoint: Annotated[Optional[str], typer.Option(
        help="Use this checkpoint instead of the registry's: a file, a folder of `dcase9 export`, or one on the "
             "Hugging Face Hub (hf://owner/name[@revision]).")] = None,
    weight: Annotated[list[str], typer.Option(help="NAME=PATH: a local file or folder (or hf://owner/name) for a "
                                              "registry weight (repeatable).")] = [],  # noqa: B006
    offline: Annotated[bool, typer.Option(help="Never download; use local files and caches only.")] = False,
    trust_checkpoint: Annotated[bool, typer.Option(
        help="Unpickle checkpoints fully (runs code they contain): only for files you trust.")] = False,
    system_config: Annotated[Optional[Path], typer.Option(help="YAML overriding the system's settings.")] = None,
    set_values: Annotated[list[str], typer.Option(
        "--set", help="KEY.PATH=VALUE for one of the system's settings, after --system-config (repeatable).")]
        = [],  # noqa: B006
    batch_size: Annotated[Optional[int], typer.Option(help="Clips per batch (default: 8 on CUDA, 2 on MPS, 1 on CPU).")] = None,
    device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option(help="fp32, or bf16/fp16 autocast.")] = "fp32",
    resampler: Annotated[str, typer.Option(
        help="32 kHz <-> a system's rate when it differs (16 kHz systems): soxr (HQ) or julius (on the device).")] = "soxr",
    workers: Annotated[Optional[int], typer.Option(help="Audio reading/writing threads.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Recompute estimates that already exist.")] = False,
) -> None:
    """Separate and score AudioSep's six LASS benchmarks (VGGSound, MUSIC, ESC-50, AudioSet, AudioCaps,
    Clotho) as its benchmark.py does, and print its table next to AudioSep's published row.

    Every benchmark is read at 32 kHz (a system at another rate gets it through the resampler, and its
    estimates come back to 32 kHz), each clip runs whole, and each is scored with AudioSep's aggregate.
    Resumable: estimates already written are kept. Exit 1 when a benchmark is missing, unusable or
    incomplete (the others are still run and reported).
    """
    from dcase9.api import suite as run_suite
    from dcase9.systems import get_system

    get_system(system)
    settings = system_settings(system_config, set_values)
    tune_process()
    result = run_suite(system, evaluation_dir, out, only=only or None, query_column=query_column, checkpoint=checkpoint,
                       weights=parse_weight_options(weight), system_options=settings, device=device,
                       precision=precision, batch_size=batch_size, resampler=resampler, workers=workers,
                       overwrite=overwrite, offline=offline, trust_checkpoint=trust_checkpoint,
                       on_result=_print_result)
    print_suite_table(result.benchmarks)
    console.print(f"summary: {escape(str(result.summary))}", highlight=False)
    raise typer.Exit(0 if result.complete else 1)


def _print_result(result: Any) -> None:
    if result.status != "scored":
        console.print(f"[red]{escape(result.title)}: {result.status}[/]: {escape(result.message)}", highlight=False,
                      soft_wrap=True)
        return
    state = "" if result.complete else f" [yellow]({result.scored} of {result.clips} clips scored)[/]"
    console.print(f"[green]{escape(result.printed)}[/]{state}", highlight=False)
    for problem in result.problems[:5]:
        console.print(f"  [red]{escape(problem)}[/]", highlight=False, soft_wrap=True)
    if len(result.problems) > 5:
        console.print(f"  ... {len(result.problems) - 5} more in {escape(str(result.report))}/summary.json")


def print_suite_table(results: list[Any]) -> None:
    """AudioSep's README table (its benchmark.py's numbers per benchmark), this run next to the published row."""
    sources = {r.published["source"] for r in results if r.published}
    table = Table(title="AudioSep's LASS benchmarks (SDRi / SI-SDR in dB, as its benchmark.py prints them)")
    for column in ("benchmark", "clips", "SDRi", "SI-SDR", "SI-SDRi", "published SDRi", "published SI-SDR"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for r in results:
        published = r.published or {}
        clips = f"{r.scored}/{r.clips}" if r.status == "scored" else r.status
        table.add_row(r.title, clips, _fmt(r.sdri), _fmt(r.sisdr), _fmt(r.sisdri), _fmt(published.get("sdri")),
                      _fmt(published.get("sisdr")))
    table.caption = ("AudioSet: median per class, then mean over classes; MUSIC: mean per instrument, then mean "
                     "over the ten; the others: mean over clips"
                     + ("; published: " + "; ".join(sorted(sources)) if sources else ""))
    console.print(table)
    for r in results:
        if r.status == "scored":
            console.print(escape(r.printed), highlight=False)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
