"""`dcase9 package`: build the DCASE submission zip, or check one (`--check`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dcase9.cli._common import app, console, friendly_errors
from dcase9.cli._tables import print_csv, print_json, print_table
from dcase9.errors import ConfigError

if TYPE_CHECKING:
    from dcase9.submission import CheckReport, Finding, PackageResult


@app.command()
@friendly_errors
def package(
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="submission.yaml (see docs/submission.example.yaml). With --check: "
        "supplies the evaluation data folders and the profile.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The zip to write.")] = None,
    check: Annotated[Optional[Path], typer.Option(
        "--check", help="Check this package instead of building one.", show_default=False)] = None,
    data_synth: Annotated[Optional[Path], typer.Option(
        "--data-synth", help="With --check: the eval-synth set, to match outputs to its CSV.")] = None,
    data_real: Annotated[Optional[Path], typer.Option(
        "--data-real", help="With --check: the eval-real set, to match outputs to its CSV.")] = None,
    profile: Annotated[Optional[str], typer.Option(
        "--profile", help="Task profile: a shipped name or a YAML path (default: submission.yaml's, "
        "else dcase2024_task9).")] = None,
    template: Annotated[Optional[Path], typer.Option(
        "--template", help="The task's official meta-information template (YAML, as downloaded from DCASE): "
        "each meta file must have every key path of it (missing: error, extra: warning).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report for scripts.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the findings as CSV for scripts (severity, code, entry, "
                                                        "line, message; a header row only when there are none).")] = False,
) -> None:
    """Build the submission zip from submission.yaml and check it; or check a zip (--check).

    Building lists every problem first (labels, systems, meta fields, parameter count, development
    results, missing/extra/malformed estimates, the PDF, secrets) and writes nothing while any
    stands. The zip is deterministic (sorted entries, fixed time stamps) and is checked before it
    replaces OUT. Exit 0: written / passes; 1: problems found (all listed); 2: unusable input.
    --json: the whole report (package, profile, ok, entries, systems, errors, findings); --csv: the findings.
    """
    from dcase9.cli._tables import one_of_json_csv

    one_of_json_csv(as_json, as_csv)
    if check is not None:
        if out is not None:
            raise ConfigError("--out builds a package and --check checks one; give one of them")
        _check(check, config, data_synth, data_real, profile, template, as_json, as_csv)
        return
    if config is None or out is None:
        raise ConfigError("give --config submission.yaml and --out PACKAGE.zip to build a package, "
                          "or --check PACKAGE.zip to check one")
    if data_synth is not None or data_real is not None:
        raise ConfigError("--data-synth/--data-real go with --check; a build takes the evaluation data "
                          "from submission.yaml (data:)")
    from dcase9.submission import build_package

    result = build_package(config, out, profile=profile, template=template, progress=not (as_json or as_csv))
    if as_json or as_csv:
        _print_for_scripts(result.to_json(), result.findings, as_json)
        raise typer.Exit(0 if result.ok else 1)
    _print_build(result)
    raise typer.Exit(0 if result.ok else 1)


def _check(package_path: Path, config: Path | None, data_synth: Path | None, data_real: Path | None,
           profile: str | None, template: Path | None, as_json: bool, as_csv: bool) -> None:
    from dcase9.submission import check_package, load_profile, load_submission_config
    from dcase9.data.formats import SetKind

    data: dict[str, Path] = {}
    profile_choice: str | None = profile
    if config is not None:
        submission = load_submission_config(config)
        data.update(submission.data)
        profile_choice = profile if profile is not None else submission.profile
    rules = load_profile(profile_choice)
    for kind, folder in ((SetKind.EVAL_SYNTH, data_synth), (SetKind.EVAL_REAL, data_real)):
        if folder is None:
            continue
        subset = rules.subset_of_kind(kind)
        if subset is None:
            raise ConfigError(f"the profile {rules.name} has no subset of kind {kind.value}")
        data[subset] = folder
    report = check_package(package_path, profile=rules, data=data, template=template)
    if as_json or as_csv:
        _print_for_scripts(report.to_json(), report.findings, as_json)
        raise typer.Exit(0 if report.ok else 1)
    _print_check(report)
    raise typer.Exit(0 if report.ok else 1)


FINDING_CSV_COLUMNS = ("severity", "code", "entry", "line", "message")


def _print_for_scripts(report: dict, findings: list[Finding], as_json: bool) -> None:
    if as_json:
        print_json(report)
    else:
        print_csv(FINDING_CSV_COLUMNS, [[getattr(f, key) for key in FINDING_CSV_COLUMNS] for f in findings])


def _print_build(result: PackageResult) -> None:
    from dcase9.metrics import describe_metric, reference_metrics

    shown = [metric.name for metric in reference_metrics() if metric.shown]  # SDR, SDRi, SI-SDR, ...
    table = Table(title=f"Systems (profile {result.profile})")
    for column in ("label", "name", "abbreviation", "parameters", " / ".join(describe_metric(m).label for m in shown),
                   "outputs", "copied", "converted"):
        table.add_column(column, justify="right" if column in ("parameters", "copied", "converted") else "left",
                         no_wrap=column in ("label", "abbreviation"))
    for system in result.systems:
        results = " / ".join(f"{system.results[m]:.3f}" if m in system.results else "-" for m in shown)
        outputs = ", ".join(f"{subset} {n}" for subset, n in system.outputs.items()) or "-"
        parameters = f"{system.total_parameters:,}" if system.total_parameters is not None else "-"
        if len(system.parameters_by_prefix) > 1:
            parameters += "\n" + "\n".join(f"[dim]{p}. {n:,}[/]" for p, n in system.parameters_by_prefix.items())
        table.add_row(escape(system.label), escape(system.name), escape(system.abbreviation), parameters, results,
                      escape(outputs), str(system.copied), str(system.converted))
    print_table(table, console)
    _print_findings(result.findings)
    errors = len(result.errors)
    if result.ok:
        size = result.package.stat().st_size
        console.print(f"[bold green]wrote[/] {escape(str(result.package))} ({result.entries} entries, {size / 2**20:.1f} MiB); "
                      "it passes the check", highlight=False, soft_wrap=True)
    else:
        console.print(f"[bold red]refused[/]: {errors} error(s); nothing was written to {escape(str(result.package))}",
                      highlight=False, soft_wrap=True)


def _print_check(report: CheckReport) -> None:
    if report.labels:
        table = Table(title=f"{escape(report.package.name)}: {report.entries} entries (profile {escape(report.profile)})")
        table.add_column("system", no_wrap=True)
        subsets = list(next(iter(report.outputs.values()), {}))  # the profile's order
        for subset in subsets:
            table.add_column(f"{subset} outputs", justify="right")
        for label in report.labels:
            table.add_row(escape(label), *[str(report.outputs.get(label, {}).get(s, 0)) for s in subsets])
        print_table(table, console)
    _print_findings(report.findings)
    if report.ok:
        matched = "matched against the evaluation CSVs" if report.data_checked else "counted (no evaluation data given)"
        console.print(f"[bold green]passes[/]: {escape(str(report.package))} ({len(report.labels)} system(s), outputs {matched}; "
                      f"{len(report.warnings)} warning(s))", highlight=False, soft_wrap=True)
    else:
        console.print(f"[bold red]FAILS[/]: {escape(str(report.package))}: {len(report.errors)} error(s), "
                      f"{len(report.warnings)} warning(s)", highlight=False, soft_wrap=True)


def _print_findings(findings: list[Finding]) -> None:
    if not findings:
        return
    counts: dict[tuple[str, str], int] = {}
    for finding in findings:
        counts[(finding.severity, finding.code)] = counts.get((finding.severity, finding.code), 0) + 1
    table = Table(title="Problems by kind")
    table.add_column("severity")
    table.add_column("code", no_wrap=True)
    table.add_column("count", justify="right")
    for (severity, code), count in sorted(counts.items()):
        table.add_row(Text(severity, style="red" if severity == "error" else "yellow"), code, str(count))
    print_table(table, console)
    for finding in findings:
        line = Text()
        line.append(finding.severity, style="red" if finding.severity == "error" else "yellow")
        where = finding.where()
        line.append(f" {where}: " if where else " ")
        line.append(finding.message)
        line.append(f" [{finding.code}]", style="dim")
        console.print(line, soft_wrap=True)
