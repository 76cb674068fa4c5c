"""`dcase9 suite`: AudioSep's six LASS benchmarks with one system, and the table its README prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dcase9.cli._common import (CheckpointOpt, OfflineOpt, QueryColumnOpt, RESUMES, SetOpt, SystemConfigOpt,
                                TrustCheckpointOpt, WeightOpt, app, console, err_console, friendly_errors,
                                parse_weight_options, print_stage, system_settings, tune_process)
from dcase9.cli._tables import CsvFlag, JsonFlag, number_cell, one_of_json_csv, print_csv, print_json, print_table
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
    checkpoint: CheckpointOpt = None,
    weight: WeightOpt = [],  # noqa: B006
    offline: OfflineOpt = False,
    trust_checkpoint: TrustCheckpointOpt = False,
    system_config: SystemConfigOpt = None,
    set_values: SetOpt = [],  # noqa: B006
    batch_size: Annotated[Optional[int], typer.Option(help="Clips per batch (default: 8 on CUDA, 2 on MPS, 1 on CPU).")] = None,
    device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option(help="fp32, or bf16/fp16 autocast.")] = "fp32",
    resampler: Annotated[str, typer.Option(
        help="32 kHz <-> a system's rate when it differs (16 kHz systems): soxr (HQ) or julius (on the device).")] = "soxr",
    workers: Annotated[Optional[int], typer.Option(help="Audio reading/writing threads.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Recompute estimates that already exist.")] = False,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
) -> None:
    """Separate and score AudioSep's six LASS benchmarks (VGGSound, MUSIC, ESC-50, AudioSet, AudioCaps,
    Clotho) as its benchmark.py does, and print its table next to AudioSep's published row.

    Every benchmark is read at 32 kHz (a system at another rate gets it through the resampler, and its
    estimates come back to 32 kHz), each clip runs whole, and each is scored with AudioSep's aggregate.
    Resumable: estimates already written are kept. Exit 1 when a benchmark is missing, unusable or
    incomplete (the others are still run and reported). A line as each stage starts: `[k/n] <benchmark>:
    separating` or `scoring`, the time so far, what is next. --json prints OUT/summary.json, --csv a row per
    benchmark run; then the progress lines go to standard error, without progress bars.
    """
    from dcase9.api import suite as run_suite
    from dcase9.systems import get_system

    one_of_json_csv(as_json, as_csv)
    get_system(system)
    settings = system_settings(system_config, set_values)
    tune_process()
    for_scripts = as_json or as_csv
    lines = err_console if for_scripts else console  # standard output is the JSON's or the CSV's alone
    result = run_suite(system, evaluation_dir, out, only=only or None, query_column=query_column, checkpoint=checkpoint,
                       weights=parse_weight_options(weight), system_options=settings, device=device,
                       precision=precision, batch_size=batch_size, resampler=resampler, workers=workers,
                       overwrite=overwrite, offline=offline, trust_checkpoint=trust_checkpoint,
                       progress=not for_scripts, on_result=lambda r: _print_result(r, lines),
                       on_stage=lambda stage: print_stage(stage, lines))
    if as_json:
        print_json(json.loads(result.summary.read_text(encoding="utf-8")))
    elif as_csv:
        print_csv(SUITE_CSV_COLUMNS, [_csv_row(r) for r in result.benchmarks])
    else:
        print_suite_table(result.benchmarks)
        console.print(f"summary: {escape(str(result.summary))}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if result.complete else 1)


# `dcase9 suite --csv`: a row per benchmark run, as in OUT/summary.json (published_*: AudioSep's numbers).
SUITE_CSV_COLUMNS = ("benchmark", "title", "status", "clips", "scored", "complete", "sdri", "sisdr", "sisdri",
                     "published_sdri", "published_sisdr", "printed")


def _csv_row(result: Any) -> list[Any]:
    published = result.published or {}
    return [result.name, result.title, result.status, result.clips, result.scored, result.complete, result.sdri,
            result.sisdr, result.sisdri, published.get("sdri"), published.get("sisdr"), result.printed]


def _print_result(result: Any, to: Console) -> None:
    if result.status != "scored":
        to.print(f"[red]{escape(result.title)}: {result.status}[/]: {escape(result.message)}", highlight=False,
                 soft_wrap=True)
        return
    state = "" if result.complete else f" [yellow]({result.scored} of {result.clips} clips scored)[/]"
    to.print(f"[green]{escape(result.printed)}[/]{state}", highlight=False)
    for problem in result.problems[:5]:
        to.print(f"  [red]{escape(problem)}[/]", highlight=False, soft_wrap=True)
    if len(result.problems) > 5:
        to.print(f"  ... {len(result.problems) - 5} more in {escape(str(result.report))}/summary.json", highlight=False,
                 soft_wrap=True)


def print_suite_table(results: list[Any]) -> None:
    """AudioSep's README table (its benchmark.py's numbers per benchmark), this run next to the published row."""
    sources = {r.published["source"] for r in results if r.published}
    table = Table(title="AudioSep's LASS benchmarks (SDRi / SI-SDR in dB, as its benchmark.py prints them)")
    for column in ("benchmark", "clips", "SDRi", "SI-SDR", "SI-SDRi", "published SDRi", "published SI-SDR"):
        table.add_column(column, justify="left" if column == "benchmark" else "right", no_wrap=column == "benchmark")
    for r in results:
        published = r.published or {}
        clips = f"{r.scored}/{r.clips}" if r.status == "scored" else r.status
        table.add_row(r.title, clips, number_cell(r.sdri), number_cell(r.sisdr), number_cell(r.sisdri), number_cell(published.get("sdri")),
                      number_cell(published.get("sisdr")))
    table.caption = ("AudioSet: median per class, then mean over classes; MUSIC: mean per instrument, then mean "
                     "over the ten; the others: mean over clips"
                     + ("; published: " + "; ".join(sorted(sources)) if sources else ""))
    print_table(table, console)
    for r in results:
        if r.status == "scored":
            console.print(escape(r.printed), highlight=False)
