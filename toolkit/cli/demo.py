"""`dcase9 demo`: the main job on the embedded demo data, end to end, offline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dcase9.cli._common import RESUMES, app, console, friendly_errors, print_stage, tune_process
from dcase9.cli._tables import print_table

_LABELS = {"mixture": "mixture (no separation)", "oracle": "oracle ratio mask (upper bound)",
           "trained": "trained here (dcase9 train --preset demo)"}


@app.command()
@friendly_errors(on_interrupt=RESUMES)
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Workspace folder for data, model, estimates and reports.")] = Path("demo-run"),
    train: Annotated[bool, typer.Option(help="Train the small demo model, score it, and package its outputs on "
                                             "the demo evaluation sets (about two minutes on two CPU cores; "
                                             "reused on later runs).")] = True,
    force: Annotated[bool, typer.Option(help="Regenerate demo data files in OUT/data that were edited.")] = False,
) -> None:
    """Synthesise the demo data, validate it, train a small model on it, separate with each system, score, and
    build a listening page of the scores (demo-run/report/index.html); then separate the demo evaluation sets with the trained model, package them as a (demo) submission,
    and check the package. Exit 1 if the package is refused or fails its check."""
    from dcase9.demo import run_demo
    from dcase9.metrics import describe_metric, shown_metrics

    started = time.perf_counter()
    tune_process()
    result = run_demo(out, train_model=train, force_data=force, on_stage=print_stage,
                      announce=lambda line: console.print(f"[bold]{escape(line)}[/]", highlight=False))
    reports = result.reports
    first = next(iter(reports.values()))
    metrics = [describe_metric(name) for name in shown_metrics(first.metrics)]  # the registry's, in its order
    units = {metric.unit for metric in metrics}
    unit = f", {units.pop()}" if len(units) == 1 and "" not in units else ""
    console.print(f"demo validation set: {escape(str(first.dataset.root))}", highlight=False, soft_wrap=True)
    table = Table(title=f"Demo results ({first.summary['scored']} mixtures{unit})")
    table.add_column("system")
    for metric in metrics:
        table.add_column(metric.label, justify="right")
    table.add_column("report", no_wrap=True)
    for system, report in reports.items():
        mean = report.summary["mean"]
        table.add_row(escape(_LABELS.get(system, system)), *(f"{mean[metric.name]:.3f}" for metric in metrics),
                      escape(str(out / "reports" / system)))
    print_table(table, console)
    if result.training is not None:
        run = result.training
        console.print(f"trained model: {run.describe_steps()}; checkpoint {escape(str(run.last_checkpoint))}",
                      highlight=False, soft_wrap=True)
        console.print(f"[bold]SDRi of the trained model: {reports['trained'].summary['mean']['sdri']:.2f} dB[/]")
    if result.page is not None:
        console.print(f"listening page: {escape(str(result.page.page))} (every mixture with its scores and players; "
                      "paired comparison in comparison.json)", highlight=False, soft_wrap=True)
    if result.package is not None:
        _print_package(result.package)
    for note in result.notes:
        console.print(f"[yellow]{escape(note)}[/]", highlight=False)
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.seconds.items())
    console.print(f"total {time.perf_counter() - started:.0f} s ({stages})", highlight=False)


def _print_package(demo_package: Any) -> None:
    """The demo's submission package (a `dcase9.demo.DemoPackage`): where, what, the check's verdict."""
    check = demo_package.check
    outputs = "; ".join(f"{label}: " + ", ".join(f"{n} {subset}" for subset, n in check.outputs.get(label, {}).items())
                        for label in check.labels)
    matched = "matched against the evaluation CSVs" if check.data_checked else "counted"
    verdict = "[bold green]passes[/]" if check.ok else "[bold red]FAILS[/]"
    console.print(f"demo package {escape(str(demo_package.package))}: the check {verdict} ({outputs} outputs "
                  f"{matched}); from {escape(str(demo_package.config))}", highlight=False, soft_wrap=True)
    # Warnings (say, estimates clipped in the conversion to 16-bit PCM); the build's include its own check's.
    for line in dict.fromkeys(str(f) for f in demo_package.build.findings + check.findings if f.severity != "error"):
        console.print(f"[yellow]{escape(line)}[/]", highlight=False)
