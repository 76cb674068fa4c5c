"""Commands on evaluation data: `validate`, `mix`, `demo-data`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dcase9.cli._common import RESUMES, CsvOpt, KindOpt, QueryColumnOpt, app, console, friendly_errors, print_left_out
from dcase9.cli._tables import print_json, print_table

DataArg = Annotated[Path, typer.Argument(help="Evaluation-set folder (or its CSV file); for AudioSep's benchmarks "
                                              "EVALUATION_DIR/data/<name>.", show_default=False)]


@app.command()
@friendly_errors
def validate(
    data: DataArg,
    kind: KindOpt = None,
    csv: CsvOpt = None,
    query_column: QueryColumnOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report for scripts.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Check the metadata only.")] = False,
    seconds: Annotated[float, typer.Option(help="Expected clip duration; 0 to skip the check (AudioSep's benchmarks "
                                                "have none: their mixtures and references must match instead).")] = 10.0,
    show: Annotated[int, typer.Option(help="How many individual problems to list (0: all).")] = 30,
) -> None:
    """Check an evaluation-set folder; exit 0 only when it is usable.

    Detects the kind (validation, eval-synth, eval-real, or one of AudioSep's six benchmarks in its
    layout) and reports every problem with its file, row and field: missing or unreadable audio, wrong
    rate/channels/duration, NaN or silent audio, empty or non-text captions, duplicate rows, unknown
    clips, bad SNRs, unsafe names, unknown columns.
    """
    from dcase9.api import validate as run_validate
    from dcase9.errors import ConfigError

    if seconds < 0 or show < 0:
        raise ConfigError("--seconds and --show must not be negative")
    report = run_validate(data, kind=kind, csv_path=csv, check_audio=not no_audio,
                          expected_seconds=seconds or None, query_column=query_column)
    usable = report.usable_strictly if strict else report.usable
    if as_json:
        print_json(report.to_json(strict))
        raise typer.Exit(0 if usable else 1)
    ds = report.dataset
    if ds is not None:
        benchmark = ds.kind.benchmark
        what = f"{benchmark.title}[/] benchmark (AudioSep's, {ds.sample_rate // 1000} kHz)" if benchmark is not None \
            else f"{ds.kind.value}[/] set"
        console.print(f"[bold]{what} in {ds.root}: {len(ds.mixtures)} mixtures, "
                      f"CSV {ds.csv_path.name} (columns: "
                      + ", ".join(f"{role}='{name}'" for role, name in ds.columns.items())
                      + f"), audio in {ds.audio_dir}, {report.files_checked} audio files checked")
    if report.issues:
        table = Table(title="Problems by kind", show_lines=False)
        table.add_column("severity")
        table.add_column("code", no_wrap=True)
        table.add_column("count", justify="right")
        for severity, code, count in report.counts_by_code():
            style = "red" if severity == "error" else "yellow"
            table.add_row(f"[{style}]{severity}[/]", code, str(count))
        print_table(table, console)
        listed = report.errors + report.warnings
        for issue in listed[: show or None]:
            style = "red" if issue.severity == "error" else "yellow"
            console.print(f"[{style}]{issue.severity}[/] {issue.where()}: {issue.message} [dim]\\[{issue.code}][/]",
                          highlight=False, soft_wrap=True)
        if show and len(listed) > show:
            console.print(f"... {len(listed) - show} more (use --show 0 or --json to see all)")
    verdict = "[bold green]usable[/]" if usable else "[bold red]NOT usable[/]"
    console.print(f"{verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
                  + (" (strict: warnings count as errors)" if strict else ""))
    raise typer.Exit(0 if usable else 1)


@app.command()
@friendly_errors(on_interrupt=RESUMES)
def mix(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    kind: KindOpt = None,
    csv: CsvOpt = None,
    pcm16: Annotated[bool, typer.Option(help="16-bit PCM instead of 32-bit float WAVs.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Rewrite existing files.")] = False,
) -> None:
    """Write the validation mixtures and references (exactly as the official evaluator builds them).

    Resumable: pairs that still match their rows and clips are kept. Exit 1 when a row's clips cannot be
    used (missing, unreadable, truncated, NaN): its pair is left out and named.
    """
    from dcase9.api import mix as run_mix
    from dcase9.data.formats import open_dataset

    result = run_mix(open_dataset(data, kind, csv), out, pcm16=pcm16, overwrite=overwrite)
    console.print(f"wrote {result.written} mixture(s) ({result.kept} already there): mixtures in "
                  f"{result.out / 'mixtures'}, references in {result.out / 'references'}, index "
                  f"{result.out / 'mixtures.csv'}")
    print_left_out(result.problems, result.orphans, "mixture")
    if result.problems:
        raise typer.Exit(1)


@app.command("demo-data")
@friendly_errors(on_interrupt=RESUMES)
def demo_data(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    clips_per_class: Annotated[int, typer.Option(help="Validation clips per sound class (8 classes).")] = 3,
    train_clips_per_class: Annotated[int, typer.Option(help="Training clips per sound class.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    force: Annotated[bool, typer.Option(help="Replace files in OUT that differ from what would be written.")] = False,
) -> None:
    """Synthesise the small demo data set in the official layouts (no download), and AudioSep's six LASS
    benchmarks in its layout under OUT/evaluation (a few 2 s clips each: `dcase9 suite OUT/evaluation`).

    Files already in OUT with the same content are left alone; if any differs (edited, or made with
    other options) nothing is written and the command refuses (exit 2), unless --force.
    """
    from dcase9.data.demo import make_demo

    folders = make_demo(out, clips_per_class=clips_per_class, train_clips_per_class=train_clips_per_class, seed=seed,
                        force=force)
    for name, folder in folders.items():
        console.print(f"{name:>10}: {folder}")
