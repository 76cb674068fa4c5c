"""`dcase9 separate`: your own recordings, any format, rate, channels and length, by a query."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from dcase9.cli._common import (CheckpointOpt, OfflineOpt, RESUMES, SetOpt, SystemConfigOpt, TrustCheckpointOpt,
                                WeightOpt, app, console, friendly_errors, parse_weight_options, system_settings,
                                tune_process)
from dcase9.cli.run import DeviceOpt


@app.command()
@friendly_errors(on_interrupt=RESUMES)
def separate(
    system: Annotated[str, typer.Option("--system", "-s", help="A text-queried system (see `dcase9 systems`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for OUT/<recording>/<query>.wav and separated.csv.")],
    files: Annotated[Optional[list[Path]], typer.Argument(
        help="Audio files: any format libsndfile reads (WAV, FLAC, OGG, MP3...), any rate, channels and length.",
        show_default=False)] = None,
    query: Annotated[list[str], typer.Option(
        "--query", "-q", help="What to separate, in words (repeatable: one output per query).")] = [],  # noqa: B006
    query_audio: Annotated[list[Path], typer.Option(
        "--query-audio", help="An audio example of the sound to separate (repeatable). With -q: the k-th text and "
                              "the k-th example make one query (their CLAP embeddings' mean).")] = [],  # noqa: B006
    query_file: Annotated[Optional[Path], typer.Option(
        "--queries", help="CSV of (file, query[, query_audio]) rows, with a header; relative paths are from its "
                          "folder.")] = None,
    checkpoint: CheckpointOpt = None,
    weight: WeightOpt = [],  # noqa: B006
    offline: OfflineOpt = False,
    trust_checkpoint: TrustCheckpointOpt = False,
    system_config: SystemConfigOpt = None,
    set_values: SetOpt = [],  # noqa: B006
    mono: Annotated[bool, typer.Option(help="Mix the channels down first (else each channel is separated).")] = False,
    residual: Annotated[bool, typer.Option(
        help="Also write the recording minus the estimate (<query>.residual.wav): what is left without it.")] = False,
    audio_format: Annotated[str, typer.Option(
        "--format", help="wav (32-bit float) or flac (24-bit).")] = "wav",
    pcm16: Annotated[bool, typer.Option(help="16-bit integer samples (WAV or FLAC).")] = False,
    segment: Annotated[Optional[float], typer.Option(
        help="Chunk length in seconds (default: the system's; 0: the whole file at once, as AudioSep's pipeline).")] = None,
    overlap: Annotated[float, typer.Option(help="Overlap between chunks, as a fraction of a chunk.")] = 0.25,
    batch_size: Annotated[Optional[int], typer.Option(help="Channels per batch (default: 1 on the CPU).")] = None,
    device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option(help="fp32, or bf16/fp16 autocast.")] = "fp32",
    overwrite: Annotated[bool, typer.Option(help="Recompute outputs that already exist.")] = False,
) -> None:
    """Separate your own recordings by a text query or an audio example: one file per recording and query, at the recording's
    rate, channels and length; long files in cross-faded chunks, in bounded memory. Resumable.

    Exit 1 when some recordings or rows were left out (the rest are written), 2 when nothing could run.
    """
    from dcase9.api import separate as run_separate
    from dcase9.systems import get_system

    get_system(system)  # a typo in the name is reported before any audio is read
    tune_process()
    result = run_separate(files or [], query, system=system, out=out, query_audio=query_audio, query_file=query_file,
                          checkpoint=checkpoint,
                          weights=parse_weight_options(weight),
                          system_options=system_settings(system_config, set_values), device=device,
                          precision=precision, batch_size=batch_size, segment=segment, overlap=overlap, mono=mono,
                          residual=residual, audio_format=audio_format, pcm16=pcm16, overwrite=overwrite,
                          offline=offline, trust_checkpoint=trust_checkpoint)
    rtf = f", real-time factor {result.seconds / result.audio_seconds:.3f}" if result.audio_seconds else ""
    console.print(f"wrote {result.written} output(s) to {result.out} ({result.kept} already there), "
                  f"{result.seconds:.1f} s on {result.device}{rtf}; index {result.index.name}", highlight=False)
    for output in result.outputs:
        residual_note = f" (residual {output.residual})" if output.residual is not None else ""
        console.print(f"  {escape(str(output.input))}, {escape(output.query)} -> {escape(str(output.estimate))}"
                      f"{escape(residual_note)}{' [dim](kept)[/]' if output.kept else ''}", highlight=False,
                      soft_wrap=True)
    if result.problems:
        console.print(f"[red]{len(result.problems)} left out[/] (nothing written for them; fix the input and run the "
                      "command again):", highlight=False)
        for problem in result.problems:
            console.print(f"  [red]{escape(problem.message)}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
