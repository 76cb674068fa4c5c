"""`dcase9 env`: what a bug report needs (and `dcase9 --version`, in _common)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dcase9.cli._common import app, console, friendly_errors
from dcase9.cli._tables import print_json, print_table


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@app.command("env")
@friendly_errors
def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (for scripts and issues).")] = False,
) -> None:
    """Versions of dcase9, Python, PyTorch and the optional extras; devices; cache folders and what they hold."""
    from dcase9.environment import describe_environment

    report = describe_environment()
    if as_json:
        print_json(report.to_json())
        return
    console.print(f"dcase9 {report.dcase9} ({escape(report.location)})", highlight=False)
    console.print(f"Python {report.python} ({escape(report.executable)}), {escape(report.platform)}", highlight=False)
    table = Table(title="Packages", title_justify="left")
    table.add_column("package", no_wrap=True)
    table.add_column("version")
    for name, version in report.packages.items():
        table.add_row(escape(name), escape(version))
    print_table(table, console)
    devices = report.devices
    cuda = ", ".join(devices.get("cuda_devices", [])) if devices["cuda"] else "not available"
    console.print(f"Devices: CPU {devices['cpu_cores']} cores (torch threads {devices['torch_threads']}); "
                  f"CUDA {cuda} (build {devices['cuda_build'] or 'CPU only'}); MPS "
                  f"{'available' if devices['mps'] else 'not available'}", highlight=False)
    for cache in report.caches:
        state = "" if cache.exists else " (not created yet)"
        console.print(f"{cache.name}: {escape(cache.path)}{state}", highlight=False)
        if cache.note:
            console.print(f"  [yellow]{escape(cache.note)}[/]", highlight=False)
        for entry, size in cache.entries.items():
            console.print(f"  {escape(entry)}  {_size(size)}", highlight=False)
    if report.variables:
        console.print("Environment: " + ", ".join(f"{k}={escape(v)}" for k, v in report.variables.items()),
                      highlight=False)
