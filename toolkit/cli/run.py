"""Commands that run systems: `systems`, `infer`, `score`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from dcase9.cli._common import (CheckpointOpt, CsvOpt, KindOpt, OfflineOpt, QueryColumnOpt, RESUMES, SetOpt,
                                SystemConfigOpt, TrustCheckpointOpt, WeightOpt, app, console, friendly_errors,
                                parse_weight_options, print_left_out, system_settings, tune_process)
from dcase9.cli._tables import CsvFlag, JsonFlag, number_cell, one_of_json_csv, print_csv, print_json, print_table

DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps.")]


@app.command("systems")
@friendly_errors
def list_systems_command(
    name: Annotated[Optional[str], typer.Argument(
        help="One system (a name or an alias): what it needs, its settings and the numbers published for it.",
        show_default=False)] = None,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
) -> None:
    """List the systems (a short row each); with NAME, one system in full: its summary, the weights it
    needs, its settings and the numbers its papers report. --json: every field (one system's object with
    NAME, else {"systems": [...]}); --csv: a row per system (the published numbers are in --json)."""
    from dcase9.systems import get_system, list_systems

    one_of_json_csv(as_json, as_csv)
    specs = [get_system(name)] if name is not None else list(list_systems())
    if as_json:
        print_json(specs[0].to_json() if name is not None else {"systems": [spec.to_json() for spec in specs]})
        return
    if as_csv:
        records = [spec.to_json() for spec in specs]
        print_csv(SYSTEM_CSV_COLUMNS, [[_csv_value(record[key]) for key in SYSTEM_CSV_COLUMNS] for record in records])
        return
    if name is not None:
        print_system(specs[0])
        return
    table = Table(title="Systems (use the name or an alias with --system)")
    table.add_column("name", no_wrap=True)
    table.add_column("also called")
    table.add_column("rate", justify="right")
    table.add_column("system")
    for spec in specs:
        table.add_row(escape(spec.name), escape(", ".join(spec.aliases)) or "-", f"{spec.sample_rate // 1000} kHz",
                      escape(spec.title))
    print_table(table, console)
    console.print("`dcase9 systems NAME`: a system's summary, the weights it needs, its settings and the numbers "
                  "published for it; --json or --csv: for scripts.", highlight=False, markup=False)


# `dcase9 systems --csv`: the fields of `SystemSpec.to_json` that are one value (lists joined with ";").
SYSTEM_CSV_COLUMNS = ("name", "aliases", "title", "summary", "sample_rate", "needs_references", "segment_seconds",
                      "weights", "optional_weights")


def _csv_value(value: Any) -> Any:
    return ";".join(value) if isinstance(value, list) else value


def print_system(spec: Any) -> None:
    """One system in full (`dcase9 systems NAME`): what it is and needs, then its published numbers."""
    from dcase9.data.benchmarks import BENCHMARKS

    needs = (["the references (validation sets only)"] if spec.needs_reference else []) + list(spec.weights)
    about = Table(show_header=False)
    about.add_column("", no_wrap=True, style="bold")
    about.add_column("")
    about.add_row("name", escape(spec.name))
    about.add_row("also called", escape(", ".join(spec.aliases)) or "-")
    about.add_row("system", escape(spec.title))
    about.add_row("summary", escape(spec.summary))
    about.add_row("rate", f"{spec.sample_rate // 1000} kHz" + ("" if spec.sample_rate == 16000 else
                                                                " (16 kHz data is resampled to it and back)"))
    about.add_row("segment", f"{spec.segment_seconds:g} s (long inputs run in chunks of it; --segment)"
                  if spec.segment_seconds else "whole inputs")
    about.add_row("needs", escape(", ".join(needs)) or "nothing")
    if spec.optional_weights:
        about.add_row("fallback", escape(", ".join(spec.optional_weights)) + " (when the main weights lack it)")
    if spec.weights:
        about.add_row("download", escape(f"dcase9 download --system {spec.name}"))
    settings = ", ".join(f"{key}={value}" for key, value in spec.options.items())
    about.add_row("settings", escape(settings) + " (--set KEY=VALUE, --system-config FILE)" if settings else "-")
    print_table(about, console)
    if spec.published:
        table = Table(title="Published on the DCASE 2024 Task 9 validation set (dB; ATS a cosine)")
        table.add_column("source")
        for column in ("SDR", "SDRi", "SI-SDR", "ATS"):
            table.add_column(column, justify="right")
        for p in spec.published:
            table.add_row(escape(p.source), *(number_cell(v) for v in (p.sdr, p.sdri, p.sisdr, p.ats)))
        print_table(table, console)
    if spec.published_benchmarks:
        numbers = {p.benchmark: p for p in spec.published_benchmarks}
        table = Table(title="Published on AudioSep's LASS benchmarks (dB, as its benchmark.py prints them; run them "
                            "with `dcase9 suite`)")
        table.add_column("benchmark", no_wrap=True)
        table.add_column("SDRi", justify="right")
        table.add_column("SI-SDR", justify="right")
        table.add_column("source")
        for benchmark in BENCHMARKS:
            if benchmark.name in numbers:
                p = numbers[benchmark.name]
                table.add_row(benchmark.title, number_cell(p.sdri), number_cell(p.sisdr), escape(p.source))
        print_table(table, console)


@app.command()
@friendly_errors(on_interrupt=RESUMES)
def infer(
    system: Annotated[str, typer.Option("--system", "-s", help="System name (see `dcase9 systems`).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Evaluation-set folder (AudioSep's benchmarks: "
                                                             "EVALUATION_DIR/data/<name>).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the <id>.wav estimates.")],
    kind: KindOpt = None,
    csv: CsvOpt = None,
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
    segment: Annotated[Optional[float], typer.Option(help="Chunk length in seconds for long inputs (default: the system's).")] = None,
    overlap: Annotated[float, typer.Option(help="Overlap between chunks, as a fraction of a chunk.")] = 0.25,
    overwrite: Annotated[bool, typer.Option(help="Recompute outputs that already exist.")] = False,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N mixtures.")] = None,
    pcm16: Annotated[bool, typer.Option(help="Write 16-bit PCM instead of 32-bit float.")] = False,
    workers: Annotated[Optional[int], typer.Option(
        help="Audio reading/writing threads (default: 2 on the CPU, half the cores up to 8 next to a GPU).")] = None,
    resampler: Annotated[str, typer.Option(
        help="16 kHz <-> the model's rate (System 2: 32 kHz): soxr (HQ, as librosa and AudioSep's own pipeline; "
             "on the CPU in the reading/writing threads) or julius (on the device).")] = "soxr",
    compile_net: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the separation net (text-queried systems). On the CPU no faster than "
                          "the default path, plus a compilation of half a minute or more (seconds once cached); "
                          "not measured on GPUs (BENCHMARKS.md).")] = False,
) -> None:
    """Separate every mixture of an evaluation set with a system; resumable (finished outputs are kept).

    On AudioSep's benchmarks the audio is read at 32 kHz, as its evaluators read it; a system at another rate
    gets it through the resampler and its estimates are brought back to 32 kHz; each clip runs whole unless
    --segment is given."""
    from dcase9.systems import get_system
    from dcase9.api import infer as run_infer
    from dcase9.data.formats import open_dataset

    get_system(system)  # a typo in the name is reported before any data is read
    tune_process()
    result = run_infer(system, open_dataset(data, kind, csv, query_column=query_column), out, checkpoint=checkpoint,
                       weights=parse_weight_options(weight),
                       system_options=system_settings(system_config, set_values), device=device,
                       precision=precision, batch_size=batch_size, segment=segment, overlap=overlap,
                       resampler=resampler, compile=compile_net, workers=workers, overwrite=overwrite, limit=limit,
                       pcm16=pcm16, offline=offline, trust_checkpoint=trust_checkpoint)
    rtf = f"{result.real_time_factor:.3f}" if result.audio_seconds else "-"
    console.print(f"wrote {result.written} estimate(s) to {result.out_dir} ({result.skipped} already there), "
                  f"{result.seconds:.1f} s on {result.device}, real-time factor {rtf}; manifest {result.manifest.name}")
    if result.recomputed:
        reasons: dict[str, list[str]] = {}
        for output_id, why in result.recomputed.items():
            reasons.setdefault(why, []).append(output_id)
        console.print(f"{len(result.recomputed)} output(s) were here but stale, computed again: " + "; ".join(
            f"{len(ids)} because {why} (e.g. {ids[0]})" for why, ids in reasons.items()), highlight=False)
    print_left_out(result.problems, result.orphans, "estimate")
    if result.problems:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def download(
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="Fetch every weight this system needs.")] = None,
    all_weights: Annotated[bool, typer.Option("--with-optional", help="Also the fallback weights (standalone CLAP).")] = False,
    list_only: Annotated[bool, typer.Option("--list", help="List the registry and where each weight is cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: the registry as JSON, for scripts.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="With --list: the registry as CSV, for scripts.")] = False,
) -> None:
    """Fetch pretrained weights ahead of time (into the Hugging Face cache or ~/.cache/dcase9).

    --list shows each weight's local path: where it is kept once fetched, and where to put a file of
    your own (a checkpoint you trained) for the systems to find it. --json: {"weights": [{name,
    description, kind, size_bytes, sha256, sources, from, local_path, local_path_exists}]}."""
    from dcase9.api import download as run_download
    from dcase9.errors import ConfigError

    one_of_json_csv(as_json, as_csv)
    if (as_json or as_csv) and not list_only:
        raise ConfigError("--json and --csv print the registry: give them with --list")
    if list_only or system is None:
        weights = registry_rows()
        if as_json:
            print_json({"weights": weights})
            return
        if as_csv:
            print_csv(WEIGHT_CSV_COLUMNS, [[" | ".join(w[key]) if isinstance(w[key], list) else w[key]
                                            for key in WEIGHT_CSV_COLUMNS] for w in weights])
            return
        table = Table(title="Weight registry (toolkit/weights.yaml)")
        table.add_column("name", no_wrap=True)
        table.add_column("what")
        table.add_column("from")
        table.add_column("local path", no_wrap=True)
        for weight in weights:
            table.add_row(escape(weight["name"]), escape(weight["description"]),
                          escape("\n".join(weight["from"])) or "[yellow]train it yourself[/]",
                          escape(weight["local_path"]))
        print_table(table, console)
        if system is None and not list_only:
            raise ConfigError("name a system with --system (or use --list)")
        return
    for name, path in run_download(system, include_optional=all_weights).items():
        console.print(f"[green]ok[/] {name}: {path}")


# `dcase9 download --list --csv`: the fields of `registry_rows` that are one value (lists joined with " | ").
WEIGHT_CSV_COLUMNS = ("name", "description", "kind", "size_bytes", "sha256", "from", "local_path", "local_path_exists")


def registry_rows() -> list[dict[str, Any]]:
    """The weight registry as `download --list --json` prints it: each entry's fields, its sources (as in
    weights.yaml, and `from`: each as one line) and its local path."""
    from dcase9.hub import cache_path
    from dcase9.weights import weight_entries

    rows = []
    for name, entry in weight_entries().items():
        local = cache_path(name, entry)
        rows.append({"name": name, "description": entry.description, "kind": entry.kind,
                     "size_bytes": entry.size_bytes, "sha256": entry.sha256,
                     "sources": [source.model_dump(mode="json", exclude_none=True) for source in entry.sources],
                     "from": [source.describe() for source in entry.sources], "local_path": str(local),
                     "local_path_exists": local.exists()})
    return rows


@app.command()
@friendly_errors
def score(
    data: Annotated[Path, typer.Option("--data", "-d", help="Evaluation-set folder (AudioSep's benchmarks: "
                                                             "EVALUATION_DIR/data/<name>).")],
    estimates: Annotated[Path, typer.Option("--estimates", "-e", help="Folder of <id>.wav estimates.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (CSV, JSON, PNG).")] = None,
    kind: KindOpt = None,
    csv: CsvOpt = None,
    query_column: QueryColumnOpt = None,
    ats: Annotated[bool, typer.Option("--ats", help="Add ATS (CLAP audio-text similarity; no reference needed).")] = False,
    ats_checkpoint: Annotated[Optional[str], typer.Option(
        help="CLAP weights for ATS: a laion .pt, a baseline/AudioSep .ckpt, or a folder of `dcase9 export` (a "
             "folder or hf://owner/name) (default: the registry's CLAP).")] = None,
    ats_mode: Annotated[str, typer.Option(
        help="resample: 16 -> 48 kHz; clapscore: as the seed authors' CLAPScore code (treats 16 kHz as 32 kHz).")] = "resample",
    clap_config: Annotated[Optional[Path], typer.Option(help="YAML with a non-default CLAP architecture.")] = None,
    weight: Annotated[list[str], typer.Option(help="NAME=PATH for a registry weight (repeatable).")] = [],  # noqa: B006
    offline: Annotated[bool, typer.Option(help="Never download; use local files and caches only.")] = False,
    trust_checkpoint: Annotated[bool, typer.Option(help="Unpickle the CLAP checkpoint fully (trusted files only).")] = False,
    device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option(help="Clips per metric batch.")] = 32,
    workers: Annotated[Optional[int], typer.Option(
        help="Audio reading threads (default: 2 on the CPU, half the cores up to 8 next to a GPU).")] = None,
) -> None:
    """Score estimates: official metrics (SDR, SDRi, SI-SDR) against the validation references,
    and with --ats the reference-free ATS (the only score on evaluation sets). On AudioSep's benchmarks:
    at 32 kHz, with SI-SDRi, and the number its benchmark.py prints (its aggregate of SDRi and SI-SDR).

    Exit 1 when estimates are missing, extra or malformed (the scores of the valid ones are still
    written).
    """
    from dcase9.api import load_ats_scorer, score as run_score
    from dcase9.ats import ATS_MODES
    from dcase9.config import read_yaml
    from dcase9.data.formats import open_dataset
    from dcase9.errors import ConfigError

    if ats_mode not in ATS_MODES:
        raise ConfigError(f"--ats-mode must be one of {', '.join(ATS_MODES)}")
    dataset = open_dataset(data, kind, csv, query_column=query_column)
    tune_process()
    scorer = None
    if ats:
        clap = read_yaml(clap_config) if clap_config else None
        scorer = load_ats_scorer(checkpoint=ats_checkpoint, weights=parse_weight_options(weight), mode=ats_mode,
                                 clap=clap, offline=offline, trust_checkpoint=trust_checkpoint, device=device)
    report = run_score(dataset, estimates, out, device=device, batch_size=batch_size, ats=scorer, workers=workers)
    print_score_summary(report.summary)
    print_benchmark_line(report.summary)
    if report.problems:
        print_score_problems(report.problems, estimates)
    if out is not None:
        console.print(f"report: {out / 'per_clip.csv'}, {out / 'summary.json'}"
                      + (f", {out / 'sdri_vs_snr.png'}" if (out / "sdri_vs_snr.png").exists() else ""))
    raise typer.Exit(1 if report.problems else 0)


def print_score_problems(problems: list[Any], estimates: Path) -> None:
    """Problems by kind: a few named one by one, a long list summarised (with why, when it is known)."""
    from dcase9.outputs import run_manifest

    by_kind: dict[str, list[Any]] = {}
    for problem in problems:
        by_kind.setdefault(problem.kind, []).append(problem)
    console.print("[red]estimate problems:[/] " + ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items())))
    for kind, items in by_kind.items():
        shown = items if len(items) <= 3 else items[:2]
        for problem in shown:
            console.print(f"  [red]{kind}[/] {escape(problem.message)}", highlight=False)
        if len(items) > len(shown):
            console.print(f"  [red]{kind}[/] ... and {len(items) - len(shown)} more (all of them in summary.json)",
                          highlight=False)
    limit = ((run_manifest(estimates) or {}).get("settings") or {}).get("limit")
    if "missing" in by_kind and limit:
        console.print(f"[yellow]{estimates} was made with --limit {limit} (its manifest says so): only the first "
                      f"{limit} mixtures were separated; run `dcase9 infer` again without --limit to fill it[/]",
                      highlight=False)


def print_score_summary(summary: dict[str, Any]) -> None:
    from dcase9.metrics import describe_metric, shown_metrics

    metrics = shown_metrics(summary["metrics"])
    table = Table(title=f"{summary['scored']} of {summary['dataset']['mixtures']} mixtures scored")
    table.add_column("")
    for m in metrics:
        table.add_column(describe_metric(m).label, justify="right")
    for row in ("mean", "median"):
        table.add_row(row, *[number_cell(summary[row][m]) for m in metrics])
    print_table(table, console)
    bins = summary.get("by_input_snr")
    if bins:
        by_snr = Table(title="Mean by input SNR (dB)")
        by_snr.add_column("input SNR")
        by_snr.add_column("n", justify="right")
        for m in metrics:
            by_snr.add_column(describe_metric(m).label, justify="right")
        for b in bins:
            by_snr.add_row(b["bin"], str(b["n"]), *[number_cell(b["mean"][m]) for m in metrics])
        print_table(by_snr, console)


def print_benchmark_line(summary: dict[str, Any]) -> None:
    """A benchmark's number as AudioSep's benchmark.py prints it."""
    benchmark = summary.get("benchmark")
    if not isinstance(benchmark, dict):
        return
    partial = "" if benchmark.get("complete") else " [yellow](of the clips scored: incomplete)[/]"
    console.print(f"AudioSep's benchmark.py ({benchmark['aggregate']}): [bold]{benchmark['printed']}[/]{partial}",
                  highlight=False)
