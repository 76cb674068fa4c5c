"""`dcase9 report`: a listening page and a paired comparison of systems from `dcase9 score` reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from dcase9.cli._common import app, console, friendly_errors
from dcase9.cli._tables import print_table


@app.command()
@friendly_errors
def report(
    reports: Annotated[list[Path], typer.Argument(help="`dcase9 score` report folders (one per system) of the "
                                                        "same data set and clips.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for index.html and its audio, images and "
                                                          "comparison.json.")],
    name: Annotated[list[str], typer.Option(help="A system's name on the page, one per report in order "
                                            "(default: the system in the estimates' run manifest, else the "
                                            "report folder's name).")] = [],  # noqa: B006
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="The data set's folder, when it is no "
                                                 "longer where the reports recorded it.")] = None,
    spectrograms: Annotated[int, typer.Option(help="Spectrogram images for this many rows, the first ones the page "
                                              "shows (worst first by the first system's SDRi or ATS).")] = 50,
    spectrogram_seconds: Annotated[float, typer.Option(help="Time budget for the spectrograms.")] = 120.0,
    metric: Annotated[Optional[str], typer.Option(help="Metric of the paired comparison (default: sdri, or ats on "
                                                  "evaluation sets).")] = None,
    tie_margin: Annotated[Optional[float], typer.Option(help="A clip is a tie when |A - B| is at most this "
                                                        "(default: 0.1 dB; 0.01 for ATS).")] = None,
    resamples: Annotated[int, typer.Option(help="Paired-bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    mixed: Annotated[Optional[Path], typer.Option(help="A `dcase9 mix` folder of the validation set: play its "
                                                  "mixtures and references instead of writing copies.")] = None,
    self_contained: Annotated[bool, typer.Option(help="Copy the estimates (and evaluation-set mixtures) into the "
                                                 "page folder, so it can be moved or shared; by default they are "
                                                 "played where they lie, by relative paths.")] = False,
) -> None:
    """Build a static listening page (index.html: a row per mixture with its scores and players for
    the mixture, the reference and each system's estimate; sortable, filterable, paginated) and a
    paired comparison of every pair of systems (bootstrap interval of the mean difference,
    win/tie/loss, per input-SNR bin) in comparison.json and comparison.png.

    Exit 2 when the reports are of different data sets or clips.
    """
    from dcase9.api import report as build
    from dcase9.metrics import describe_metric

    result = build(reports, out, names=name or None, data=data, spectrograms=spectrograms,
                   spectrogram_seconds=spectrogram_seconds, metric=metric, tie_margin=tie_margin,
                   resamples=resamples, seed=seed, self_contained=self_contained, mixed=mixed)
    comparison = result.comparison
    if comparison["pairs"]:
        settings = comparison["settings"]
        unit = describe_metric(settings["metric"]).unit
        unit = f" {unit}" if unit else ""
        table = Table(title=f"Paired comparison, {settings['label']}{unit} ({result.clips} clips, "
                            f"{int(round(settings['confidence'] * 100))}% bootstrap interval, tie: |A - B| <= "
                            f"{settings['tie_margin']:g}{unit})")
        for column in ("A", "B", "mean A - B", "interval", "A better / tie / B better"):
            table.add_column(column, justify="left" if column in {"A", "B"} else "right")  # names wrap at spaces
        for pair in comparison["pairs"]:
            if pair["mean_diff"] is None:
                table.add_row(escape(pair["a"]), escape(pair["b"]), "-", "-", "-")
                continue
            table.add_row(escape(pair["a"]), escape(pair["b"]), f"{pair['mean_diff']:+.3f}",
                          f"[{pair['ci_low']:+.3f}, {pair['ci_high']:+.3f}]",
                          f"{pair['wins']} / {pair['ties']} / {pair['losses']}")
        print_table(table, console)
    images = result.spectrograms
    console.print(f"page: {escape(str(result.page))} ({result.clips} mixtures of the {result.kind} set, "
                  f"{len(result.systems)} system(s); {images.images} spectrogram image(s) for {len(images.made)} rows; "
                  f"{result.audio_written} audio file(s) written, {result.audio_kept} kept; {result.seconds:.1f} s)",
                  highlight=False)
    for note in result.notes:
        console.print(f"[yellow]{escape(note)}[/]", highlight=False)
    if result.problems:
        console.print(f"[red]{len(result.problems)} value(s) left out[/] (fix or score the report again):",
                      highlight=False)
        for problem in result.problems[:20]:
            console.print(f"  {escape(problem)}", highlight=False, soft_wrap=True)
        if len(result.problems) > 20:
            console.print(f"  ... {len(result.problems) - 20} more", highlight=False)
        raise typer.Exit(1)
