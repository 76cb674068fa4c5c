"""`dcase9 demo`: the main job on the embedded demo data, end to end, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from toolkit.cli._common import app, console, friendly_errors


@app.command()
@friendly_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Workspace folder for data, estimates and reports.")] = Path("demo-run"),
) -> None:
    """Synthesise the demo data, validate it, separate it with each system, and score the results."""
    from toolkit.api import run_demo

    reports = run_demo(out)
    table = Table(title=f"Demo results on {next(iter(reports.values())).dataset.root}")
    for column in ("system", "SDR", "SDRi", "SI-SDR", "report"):
        table.add_column(column, justify="right" if column in {"SDR", "SDRi", "SI-SDR"} else "left")
    for system, report in reports.items():
        mean = report.summary["mean"]
        table.add_row(system, f"{mean['sdr']:.3f}", f"{mean['sdri']:.3f}", f"{mean['sisdr']:.3f}",
                      str(out / "reports" / system))
    console.print(table)
