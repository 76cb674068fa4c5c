"""Commands that run systems: `systems`, `infer`, `score`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from dcase9.cli._common import (RESUMES, CsvOpt, KindOpt, QueryColumnOpt, app, console, friendly_errors,
                                parse_weight_options, print_left_out, system_settings, tune_process)

DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps.")]


@app.command("systems")
@friendly_errors
def list_systems_command() -> None:
    """List the systems, what each needs, and the numbers their papers report."""
    from dcase9.systems import list_systems

    table = Table(title="Systems (use the name with --system)")
    for column in ("name", "system", "rate", "needs", "published SDR / SDRi / SI-SDR / ATS (validation set)"):
        table.add_column(column)
    for spec in list_systems():
        needs = ", ".join((["references"] if spec.needs_reference else []) + list(spec.weights)) or "-"
        published = "\n".join(
            " / ".join("-" if v is None else f"{v:.3f}" for v in (p.sdr, p.sdri, p.sisdr, p.ats)) + f" ({p.source})"
            for p in spec.published) or "-"
        names = spec.name + (f" ({', '.join(spec.aliases)})" if spec.aliases else "")
        table.add_row(names, f"{spec.title}\n[dim]{spec.summary}[/]", f"{spec.sample_rate // 1000} kHz", needs, published)
    console.print(table)
    print_published_benchmarks(list_systems())


def print_published_benchmarks(specs: Any) -> None:
    """The numbers published on AudioSep's six LASS benchmarks, per system that has them (`dcase9 suite`)."""
    from dcase9.data.benchmarks import BENCHMARKS

    with_numbers = [spec for spec in specs if spec.published_benchmarks]
    if not with_numbers:
        return
    table = Table(title="AudioSep's LASS benchmarks: published SDRi / SI-SDR in dB (run them with `dcase9 suite`)")
    table.add_column("name")
    for benchmark in BENCHMARKS:
        table.add_column(benchmark.title, justify="right")
    table.add_column("source")
    for spec in with_numbers:
        numbers = {p.benchmark: f"{p.sdri:.3f} / {p.sisdr:.3f}" for p in spec.published_benchmarks}
        table.add_row(spec.name, *[numbers.get(b.name, "-") for b in BENCHMARKS],
                      "; ".join(sorted({p.source for p in spec.published_benchmarks})))
    console.print(table)


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
    checkpoint: Annotated[Optional[str], typer.Option(
        help="Use this checkpoint instead of the registry's: a file, a folder of `dcase9 export`, or one on the "
             "Hugging Face Hub (hf://owner/name[@revision]). One of `dcase9 train` or `dcase9 export` brings its "
             "own settings and tokenizer.")] = None,
    weight: Annotated[list[str], typer.Option(help="NAME=PATH: a local file or folder (or hf://owner/name) for a "
                                              "registry weight (repeatable; see `dcase9 download --list`).")] = [],  # noqa: B006
    offline: Annotated[bool, typer.Option(help="Never download; use local files and caches only.")] = False,
    trust_checkpoint: Annotated[bool, typer.Option(
        help="Unpickle checkpoints fully (runs code they contain): only for files you trust.")] = False,
    system_config: Annotated[Optional[Path], typer.Option(
        help="YAML overriding the system's settings (e.g. n_fft, hop_length, clap architecture), and those a "
             "`dcase9 train` checkpoint carries, key by key.")] = None,
    set_values: Annotated[list[str], typer.Option(
        "--set", help="KEY.PATH=VALUE for one of the system's settings, e.g. --set hop_length=320 (repeatable; "
                      "applied after --system-config).")] = [],  # noqa: B006
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
) -> None:
    """Fetch pretrained weights ahead of time (into the Hugging Face cache or ~/.cache/dcase9)."""
    from dcase9.weights import weight_entries
    from dcase9.api import download as run_download
    from dcase9.errors import ConfigError
    from dcase9.hub import cache_path

    if list_only or system is None:
        table = Table(title="Weight registry (toolkit/weights.yaml)")
        for column in ("name", "what", "from", "local path"):
            table.add_column(column)
        for name, entry in weight_entries().items():
            sources = "\n".join(s.describe() for s in entry.sources) or "[yellow]train it yourself[/]"
            table.add_row(name, entry.description, sources, str(cache_path(name, entry)))
        console.print(table)
        if system is None and not list_only:
            raise ConfigError("name a system with --system (or use --list)")
        return
    for name, path in run_download(system, include_optional=all_weights).items():
        console.print(f"[green]ok[/] {name}: {path}")


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
        table.add_row(row, *[_fmt(summary[row][m]) for m in metrics])
    console.print(table)
    bins = summary.get("by_input_snr")
    if bins:
        by_snr = Table(title="Mean by input SNR (dB)")
        by_snr.add_column("input SNR")
        by_snr.add_column("n", justify="right")
        for m in metrics:
            by_snr.add_column(describe_metric(m).label, justify="right")
        for b in bins:
            by_snr.add_row(b["bin"], str(b["n"]), *[_fmt(b["mean"][m]) for m in metrics])
        console.print(by_snr)


def print_benchmark_line(summary: dict[str, Any]) -> None:
    """A benchmark's number as AudioSep's benchmark.py prints it."""
    benchmark = summary.get("benchmark")
    if not isinstance(benchmark, dict):
        return
    partial = "" if benchmark.get("complete") else " [yellow](of the clips scored: incomplete)[/]"
    console.print(f"AudioSep's benchmark.py ({benchmark['aggregate']}): [bold]{benchmark['printed']}[/]{partial}",
                  highlight=False)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{round(value, 3) + 0.0:.3f}"  # + 0.0: -0.0 prints as 0.000
