"""The Python API: the same verbs as the `dcase9` command line.

    from dcase9 import api
    report = api.validate("data/validation")
    separator = api.load_separator("baseline", checkpoint="baseline.ckpt")
    estimate = separator.separate(mixture, "a dog barks", sample_rate=44100)
    api.separate(["song.mp3"], "a dog barks", system="2", out="separated")
    api.infer("oracle", "data/validation", "estimates/oracle")
    scores = api.score("data/validation", "estimates/oracle", out="reports/oracle")
    page = api.report(["reports/oracle", "reports/baseline"], "reports/page")
    run = api.train("runs/system1", preset="system1", overrides={"data": {"datafiles": ["aug.json"]}})

The demo (`dcase9 demo`) builds on these verbs: `dcase9.demo.run_demo`.
"""

from __future__ import annotations

import csv
import io
from contextlib import nullcontext
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcase9.audio import SAMPLE_RATE, write_wav
from dcase9.data.formats import DataSet, SetKind, open_dataset
from dcase9.data.items import ItemLoader, LoadFailure
from dcase9.data.validate import EXPECTED_SECONDS, ValidationReport, validate_dataset
from dcase9.devices import resolve_device
from dcase9.engine import EngineOptions, RunResult, Separator, refuse_reference_system
from dcase9.progress import Stage, progress_bar
from dcase9.errors import CheckpointError, ConfigError, Dcase9Error
from dcase9.files import check_no_overlap, require_folder, write_text_atomic
from dcase9.outputs import MIX_INDEX_NAME, OutputFolder, Problem, mix_paths
from dcase9.scoring import ScoreReport, score_estimates

if TYPE_CHECKING:  # imported when used: they pull in models, Lightning, matplotlib
    from dcase9.ats import AtsScorer
    from dcase9.recordings import SeparateResult
    from dcase9.report import ReportResult
    from dcase9.suite import BenchmarkResult, SuiteResult
    from dcase9.training import SystemFacts, TrainConfig, TrainResult


def validate(data: str | Path, *, kind: str | None = None, csv_path: str | Path | None = None,
             check_audio: bool = True, expected_seconds: float | None = EXPECTED_SECONDS,
             query_column: str | None = None) -> ValidationReport:
    """Check an evaluation-set folder (or one of AudioSep's benchmarks, `EVALUATION_DIR/data/<name>`; `query_column`:
    AudioCaps' query column); see `ValidationReport.usable` (and `usable_strictly`)."""
    return validate_dataset(data, kind, csv_path, check_audio=check_audio, expected_seconds=expected_seconds,
                            query_column=query_column)


@dataclass
class MixResult:
    """What `mix` did: its folder, the pairs written and kept, and the mixtures left out (and why)."""

    out: Path
    written: int
    kept: int
    problems: list[Problem] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def mix(data: str | Path | DataSet, out: str | Path, *, pcm16: bool = False, overwrite: bool = False,
        progress: bool = True) -> MixResult:
    """Write the validation mixtures and their references as 16 kHz WAVs, plus an index CSV.

    Layout: `out/mixtures/<id>.wav`, `out/references/<id>.wav`, `out/mixtures.csv` (the pairs
    written), with a manifest and ledger as `infer` keeps them (see `dcase9.outputs`): a re-run
    keeps the pairs that still match their rows and clips. The references are the target clips as
    scaled by the evaluator (0.9/peak when the mixture clips). A row whose clips cannot be used
    (missing, unreadable, truncated, NaN) is left out and listed in `MixResult.problems`.
    """
    dataset = open_dataset(data)
    if dataset.kind is not SetKind.VALIDATION:
        raise Dcase9Error(f"`mix` builds validation mixtures; the {dataset.kind.value} set ships its mixtures "
                          f"already ({dataset.audio_dir})")
    out = Path(out)
    check_no_overlap({"--out": out}, dataset.input_paths())
    subtype = "PCM_16" if pcm16 else "FLOAT"

    problems: list[Problem] = []
    written = 0
    folder = OutputFolder(out, "mix", dataset, {"command": "mix", "subtype": subtype}, overwrite=overwrite,
                          outputs_of=lambda output_id: mix_paths(out, output_id))
    with folder:
        todo = folder.plan(dataset.mixtures)
        folder.write_manifest({"status": "running", "planned": len(dataset.mixtures)})
        bar = progress_bar("mixtures") if progress else None
        loader = ItemLoader(dataset)
        with bar if bar is not None else nullcontext():
            task = bar.add_task("mixing", total=len(todo)) if bar is not None else None
            for item in loader.iterate_or_fail(todo):
                if isinstance(item, LoadFailure):
                    problems.append(Problem(item.spec.id, str(item.error)))
                else:
                    output_id, samples = item.spec.id, len(item.mixture)
                    for path, audio in zip(mix_paths(out, output_id), (item.mixture, item.reference), strict=True):
                        write_wav(path, audio, SAMPLE_RATE, subtype,  # type: ignore[arg-type]
                                  before_replace=lambda written, path=path, output_id=output_id, samples=samples:
                                  folder.record_file(output_id, path, written, samples))
                    written += 1
                if bar is not None and task is not None:
                    bar.update(task, advance=1)
        finished = folder.finished(dataset.mixtures)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["id", "mixture", "reference", "source", "noise", "snr", "caption"])
        for m in finished:
            writer.writerow([m.id, *(path.relative_to(out).as_posix() for path in mix_paths(out, m.id)), m.source,
                             m.noise, m.snr, m.query])
        write_text_atomic(out / MIX_INDEX_NAME, buffer.getvalue())
        folder.write_manifest({"status": "incomplete" if problems else "complete", "planned": len(dataset.mixtures),
                               "written": written, "kept": len(dataset.mixtures) - len(todo),
                               "problems": [{"id": p.id, "message": p.message} for p in problems]})
    return MixResult(out, written, len(dataset.mixtures) - len(todo), problems, folder.orphans)


def load_separator(system: str, *, checkpoint: str | Path | None = None,
                   weights: dict[str, str | Path] | None = None, system_options: dict[str, Any] | None = None,
                   device: str = "auto", precision: str = "fp32", batch_size: int | None = None,
                   segment: float | None = None, overlap: float = 0.25, resampler: str = "soxr",
                   compile: bool = False, offline: bool = False, trust_checkpoint: bool = False,
                   progress: bool = True, audio_queries: bool = False) -> Separator:
    """A registered system, ready to separate audio in memory (`dcase9.engine.Separator`):

        separator = api.load_separator("baseline", checkpoint="baseline.ckpt")
        estimate = separator.separate(mixture, "a dog barks", sample_rate=44100)   # numpy in, numpy out
        estimates = separator.separate(batch, ["a dog barks", "rain"], sample_rate=16000)  # (batch, samples)
        separator.infer(open_dataset("data/validation"), "est")        # what `dcase9 infer` does

    `checkpoint` replaces the system's main weights: a file, a folder of `dcase9 export`, or one on
    the Hugging Face Hub (`"hf://owner/name[@revision]"`); `weights` maps any registry name to a local
    path (or `hf://...`); `system_options` override the system's settings (its typed configuration: n_fft,
    the CLAP architecture, ...). A checkpoint of `dcase9 train` carries its system options and, when it is
    not the registry's, its tokenizer: they are the defaults under `system_options` and `weights`
    (checkpoints made elsewhere need `system_options` as before). The engine's settings are those of
    `dcase9 infer`: `device`, `precision` (fp32, bf16, fp16), `batch_size`, `segment` (seconds per
    chunk for long inputs), `overlap`, `resampler` (soxr or julius), `compile`; outputs equal its outputs.
    `audio_queries=True` builds CLAP's audio tower too, for audio examples as queries (`query_audio=`).
    """
    from dcase9.systems import load_separator as load

    engine = EngineOptions(batch_size=batch_size, device=device, precision=precision, segment_seconds=segment,
                           overlap=overlap, resampler=resampler, compile=compile, progress=progress)
    return load(system, checkpoint=checkpoint, weights=weights, system_options=system_options, engine=engine,
                offline=offline, trust_checkpoint=trust_checkpoint, audio_queries=audio_queries)


def infer(system: str, data: str | Path | DataSet, out: str | Path, *, checkpoint: str | Path | None = None,
          weights: dict[str, str | Path] | None = None, system_options: dict[str, Any] | None = None,
          device: str = "auto", precision: str = "fp32", batch_size: int | None = None,
          segment: float | None = None, overlap: float = 0.25, resampler: str = "soxr", compile: bool = False,
          workers: int | None = None, overwrite: bool = False, limit: int | None = None, pcm16: bool = False,
          offline: bool = False, trust_checkpoint: bool = False, progress: bool = True) -> RunResult:
    """Run a registered system over an evaluation set, writing `out/<id>.wav` at 16 kHz (`dcase9 infer`).

    The separator is `load_separator`'s (the same keywords); `workers` (reading and writing threads),
    `overwrite`, `limit` and `pcm16` are the folder's settings, as `dcase9 infer`'s flags.
    """
    from dcase9.hub import local_checkpoint
    from dcase9.systems import get_system, load_separator as load

    spec = get_system(system)
    engine = EngineOptions(batch_size=batch_size, device=device, precision=precision, segment_seconds=segment,
                           overlap=overlap, resampler=resampler, compile=compile, workers=workers,
                           overwrite=overwrite, limit=limit, pcm16=pcm16, progress=progress)
    engine.check()
    require_folder(out, "the estimates")  # before a model is loaded for nothing
    dataset = open_dataset(data)
    check_no_overlap({"--out": out}, {**dataset.input_paths(), "--checkpoint": local_checkpoint(checkpoint),
                                      **{f"--weight {name}": local_checkpoint(path)
                                         for name, path in (weights or {}).items()}})
    if spec.needs_reference and not dataset.has_references:
        raise Dcase9Error(f"system '{spec.name}' needs references; the {dataset.kind.value} set has none")
    separator = load(system, checkpoint=checkpoint, weights=weights, system_options=system_options, engine=engine,
                     offline=offline, trust_checkpoint=trust_checkpoint)
    return separator.infer(dataset, out)


def separate(files: str | Path | Sequence[str | Path] = (), queries: str | Sequence[str] | None = None, *,
             system: str, out: str | Path, query_audio: str | Path | Sequence[str | Path] | None = None,
             query_file: str | Path | None = None,
             checkpoint: str | Path | None = None, weights: dict[str, str | Path] | None = None,
             system_options: dict[str, Any] | None = None, device: str = "auto", precision: str = "fp32",
             batch_size: int | None = None, segment: float | None = None, overlap: float = 0.25, mono: bool = False,
             residual: bool = False, audio_format: str = "wav", pcm16: bool = False, overwrite: bool = False,
             offline: bool = False, trust_checkpoint: bool = False, progress: bool = True) -> SeparateResult:
    """Separate your own recordings (`dcase9 separate`): each of `files` (any format libsndfile reads, any
    rate, channel count and length) for each of the text `queries` and audio examples `query_audio` (given
    both, the k-th text and the k-th example make one query: `dcase9.models.clap.query`), and the (file,
    query[, query_audio]) rows of the CSV `query_file`, into `out/<recording>/<query>.wav` at the
    recording's rate, channels and length (see `dcase9.recordings` for the layout, names and resume rules).

    `mono`: mix the channels down first (else each is separated); `residual`: also write the recording
    minus the estimate (`<query>.residual.wav`); `audio_format` `wav` (32-bit float) or `flac` (24-bit),
    `pcm16` for 16-bit. `segment` (seconds; 0: the whole file at once, as AudioSep's pipeline) and the
    other keywords are `load_separator`'s. Recordings that cannot be used are left out and listed in
    the result's `problems` (exit 1 on the command line); when none is left, `NothingToSeparate`.
    """
    from dcase9.hub import local_checkpoint
    from dcase9.recordings import plan_separation, queries_of, read_query_pairs, separate_recordings
    from dcase9.systems import get_system, load_separator as load

    files = [files] if isinstance(files, (str, Path)) else list(files)
    texts = [queries] if isinstance(queries, str) else list(queries or [])
    examples = [query_audio] if isinstance(query_audio, (str, Path)) else list(query_audio or [])
    wanted = queries_of(texts, examples)
    if files and not wanted:
        raise ConfigError("say what to separate: give a query (-q \"a dog barks\") or an audio example "
                          "(--query-audio FILE)")
    if not files and query_file is None:
        raise ConfigError("no recording given: name audio files, or a --queries file of (file, query) rows")
    spec = get_system(system)
    refuse_reference_system(spec.name, spec.needs_reference)
    engine = EngineOptions(batch_size=batch_size, device=device, precision=precision, segment_seconds=segment,
                           overlap=overlap, progress=progress)
    engine.check()
    require_folder(out, "the separated outputs")
    check_no_overlap({"--out": out}, {**{f"the recording {path}": path for path in files}, "--queries": query_file,
                                      **{f"the audio example {path}": path for path in examples},
                                      "--checkpoint": local_checkpoint(checkpoint),
                                      **{f"--weight {name}": local_checkpoint(path) for name, path in (weights or {}).items()}})
    pairs: list[Any] = [(Path(path), query, None) for path in files for query in wanted]
    problems = []
    if query_file is not None:
        rows, problems = read_query_pairs(query_file)
        pairs += rows
        check_no_overlap({"--out": out}, {**{f"the recording {path}": path for path, _, _ in rows},
                                          **{f"the audio example {q.audio}": q.audio for _, q, _ in rows}})
    plan = plan_separation(pairs, problems)  # bad recordings are refused before a model is loaded
    separator = load(system, checkpoint=checkpoint, weights=weights, system_options=system_options, engine=engine,
                     offline=offline, trust_checkpoint=trust_checkpoint, audio_queries=bool(plan.examples))
    return separate_recordings(separator, plan, out, mono=mono, residual=residual, audio_format=audio_format,
                               pcm16=pcm16, overwrite=overwrite, progress=progress)


def download(system: str, *, include_optional: bool = False, offline: bool = False,
             progress: bool = True) -> dict[str, Path]:
    """Fetch every weight a system needs ahead of time; returns their local paths. Those that cannot be had
    (unpublished, offline and not cached, or the network unreachable) are named together before anything is
    downloaded (`dcase9.weights.MissingWeights`)."""
    from dcase9.systems import get_system
    from dcase9.weights import WeightResolver

    spec = get_system(system)
    resolver = WeightResolver(offline=offline, progress=progress)
    names = spec.weights + (spec.optional_weights if include_optional else ())
    resolver.require(names)
    return {name: resolver(name) for name in names}


def load_ats_scorer(*, checkpoint: str | Path | None = None, weights: dict[str, str | Path] | None = None,
                    mode: str = "resample", clap: dict[str, Any] | None = None, offline: bool = False,
                    trust_checkpoint: bool = False, device: str = "auto", progress: bool = True) -> AtsScorer:
    """The CLAP model ATS uses: by default the standalone laion CLAP file of the registry (the query
    encoder's weights); `checkpoint` may be another laion `.pt`, a baseline/AudioSep `.ckpt` (its
    `query_encoder.model.*` part) or a checkpoint of `dcase9 train` or folder of `dcase9 export` (a local
    folder or `hf://owner/name`; one whose query encoder is the registry's CLAP gives that). `clap`
    overrides the architecture (ClapArchitecture fields); a checkpoint of `dcase9 train` or `dcase9 export`
    brings its own architecture and tokenizer. Every weight needed besides `checkpoint` is checked before
    anything is read or downloaded, and those missing are named together (`MissingWeights`)."""
    from dcase9.ats import AtsScorer
    from dcase9.hub import checkpoint_location, resolve_checkpoint
    from dcase9.models.checkpoints import read_checkpoint
    from dcase9.models.description import ENTRY, describe_checkpoint
    from dcase9.weights import CLAP_WEIGHT, TOKENIZER_WEIGHT, WeightResolver
    from dcase9.models.clap import ClapArchitecture, ClapEncoder, laion_clap_weights_of, load_roberta_tokenizer

    explicit = {k: checkpoint_location(v) for k, v in (weights or {}).items()}
    resolver = WeightResolver(explicit, offline=offline, progress=progress, roles={CLAP_WEIGHT: "checkpoint"})
    read: Any = None
    try:
        if checkpoint is None:
            resolver.require([*explicit, TOKENIZER_WEIGHT, CLAP_WEIGHT])
            path = resolver(CLAP_WEIGHT)
        else:
            resolver.require(explicit)
            path = resolve_checkpoint(checkpoint, offline=offline)
            read = read_checkpoint(path, trust=trust_checkpoint)
            described = describe_checkpoint(read, str(path))
            if described is not None and described.tokenizer_files:
                resolver.embed(TOKENIZER_WEIGHT, described.tokenizer_files, f"{path} ({ENTRY}.tokenizer_files)")
            if clap is None and described is not None:
                clap = described.options.get("clap")  # the architecture it was trained with
            # An export whose CLAP is a registry weight: that weight.
            referenced = described.query_encoder_weight if described is not None else None
            resolver.require([TOKENIZER_WEIGHT, *([referenced] if referenced else [])])
            if referenced:
                path, read = resolver(referenced), None
        tokenizer = load_roberta_tokenizer(resolver(TOKENIZER_WEIGHT))
    finally:
        resolver.close()  # an embedded tokenizer is loaded by now
    laion = laion_clap_weights_of(read if read is not None else read_checkpoint(path, trust=trust_checkpoint),
                                  source=str(path))
    architecture = ClapArchitecture(**(clap or {}))
    try:
        encoder = ClapEncoder.from_laion_weights(laion, tokenizer=tokenizer, spec=architecture.spec(),
                                                 source=str(path), device=resolve_device(device))
    except CheckpointError as exc:
        if clap is not None or ("mis-shaped" not in str(exc) and "missing" not in str(exc)):
            raise
        # Shapes that differ from the registry's CLAP: most likely another architecture, which nothing here
        # can read from a laion file (it records none).
        raise CheckpointError(f"{exc}\nIf {path} is a CLAP of another architecture than the registry's, describe it: "
                              "`dcase9 score --clap-config YAML` (clap= in Python; the fields of "
                              "dcase9.models.clap.ClapArchitecture).") from None
    return AtsScorer(encoder, mode=mode)  # type: ignore[arg-type]


def score(data: str | Path | DataSet, estimates: str | Path, out: str | Path | None = None, *,
          device: str = "auto", batch_size: int = 32, progress: bool = True, ats: Any = None,
          workers: int | None = None) -> ScoreReport:
    """Official metrics of a folder of estimates; writes the report files when `out` is given.

    `ats`: an `AtsScorer` (see `load_ats_scorer`) to add the reference-free ATS column; with it,
    evaluation sets (no references) are scored by ATS alone. `workers`: reading threads (None: 2 on
    the CPU, up to 8 next to a GPU).
    """
    extra = {"ats": ats} if ats is not None else None
    return score_estimates(data, estimates, out, device=device, batch_size=batch_size, progress=progress,
                           extra_metrics=extra, workers=workers)


def report(reports: list[str | Path], out: str | Path, **options: Any) -> ReportResult:
    """A listening page and a paired comparison from `score` report folders of the same data set
    and clips (`dcase9 report`): `out/index.html`, `out/comparison.json`, `out/comparison.png`.

    Options (see `dcase9.report.build_report`): `names` (one per report), `data` (the data set's
    folder when it has moved), `spectrograms` and `spectrogram_seconds` (the image budget),
    `metric`, `tie_margin`, `resamples`, `seed`, `confidence` (the comparison), `self_contained`
    (copy the estimates into `out`), `mixed` (a `dcase9 mix` folder to play instead of writing audio). Returns a `dcase9.report.ReportResult`.
    """
    from dcase9.report import build_report

    return build_report(reports, out, **options)


def train_config(out: str | Path, *, preset: str | None = None, config: str | Path | None = None,
                 overrides: dict[str, Any] | list[dict[str, Any]] | None = None, resume: bool = False) -> TrainConfig:
    """The configuration `train` runs (`dcase9 train --print-config`): `preset`, then the YAML `config`,
    then `overrides` (a nested mapping, or a list of them applied in order, e.g. `{"data": {"datafiles":
    ["train.json"]}, "trainer": {"max_steps": 1000}}`). With `resume=True`: the run's saved configuration
    in `out`, then `overrides`."""
    from dcase9.config import read_yaml
    from dcase9.training import assemble_config
    from dcase9.training.run import CONFIG_FILE

    base = None
    if resume:
        saved = Path(out) / CONFIG_FILE
        if not saved.is_file():
            raise ConfigError(f"resume: {saved} not found (is {out} a training run folder?)")
        if preset is not None:
            raise ConfigError("resume continues the run's saved configuration; a preset applies to new runs only")
        base = read_yaml(saved)
    layers = overrides if isinstance(overrides, list) else [overrides] if overrides else []
    return assemble_config(preset=preset, config_file=config, overrides=layers, base=base)


def train(out: str | Path, *, preset: str | None = None, config: str | Path | None = None,
          overrides: dict[str, Any] | list[dict[str, Any]] | None = None, resume: bool = False, progress: bool = True,
          trust_checkpoint: bool = False, resume_from: str | Path | None = None,
          lightning_info: bool = False) -> TrainResult:
    """Train a separation model (`dcase9 train`) with `train_config`'s configuration (the same arguments).
    With `resume=True` the run in `out` continues from its saved configuration and last.ckpt;
    `trust_checkpoint=True` lets the checkpoints it starts from run the pickled code they contain.
    `lightning_info=True` shows Lightning's start-up messages and model summary (`--lightning-info`).
    `resume_from` continues a run of the official training code from its Lightning checkpoint in
    the new folder `out` (see docs/training.md).
    Returns a `dcase9.training.TrainResult`; a run that diverges raises
    `dcase9.training.run.TrainingDiverged`, an interrupted one `TrainingInterrupted`. See docs/training.md.
    """
    from dcase9.training import train as run_training

    from dcase9.training.run import RESUME_OR_RESUME_FROM

    if resume and resume_from is not None:
        raise ConfigError(RESUME_OR_RESUME_FROM)
    settings = train_config(out, preset=preset, config=config, overrides=overrides, resume=resume)
    check_no_overlap({"--out": out}, {"--config": config})  # the data files are checked where they are read
    return run_training(settings, out, system=system_facts(settings.system), resume=resume,
                        progress=progress, trust_checkpoint=trust_checkpoint, resume_from=resume_from,
                        lightning_info=lightning_info)


def system_facts(name: str | None) -> SystemFacts:
    """What training needs to know of the system that will load its checkpoints (`config.system`;
    None: System 1, the baseline's architecture), as a `dcase9.training.SystemFacts`: its rate and
    the `dcase9 infer` command line that loads a checkpoint."""
    from dcase9.systems import get_system
    from dcase9.training import SystemFacts
    from dcase9.training.run import infer_command_line

    system = name or "1"
    spec = get_system(system)
    # What inference loads besides the checkpoint: local copies of these are passed on with --weight.
    loaded = set(spec.weights[1:]) | set(spec.optional_weights)

    def infer_command(checkpoint: Path, local_weights: Any, data: str | None = None) -> str:
        return infer_command_line(system, checkpoint, {k: v for k, v in local_weights.items() if k in loaded}, data)

    return SystemFacts(spec.name, spec.sample_rate, infer_command)


def suite(system: str, evaluation_dir: str | Path, out: str | Path, *, only: list[str] | None = None,
          query_column: str | None = None, checkpoint: str | Path | None = None,
          weights: dict[str, str | Path] | None = None,
          system_options: dict[str, Any] | None = None, device: str = "auto", precision: str = "fp32",
          batch_size: int | None = None, resampler: str = "soxr", workers: int | None = None, overwrite: bool = False,
          offline: bool = False, trust_checkpoint: bool = False, progress: bool = True, score_batch_size: int = 32,
          on_result: Callable[[BenchmarkResult], None] | None = None,
          on_stage: Callable[[Stage], None] | None = None) -> SuiteResult:
    """AudioSep's six LASS benchmarks with a registered system (`dcase9 suite`): `evaluation_dir` in AudioSep's
    layout (`metadata/`, `data/<name>/`), `out/<name>/estimates` and `out/<name>/report` per benchmark and
    `out/summary.json`; resumable. `only`: some of the benchmarks; `query_column`: AudioCaps' query column (caption
    or labels). The separator is `load_separator`'s (the same keywords; each clip runs whole, as AudioSep's
    evaluators run them); `overwrite` recomputes estimates; `score_batch_size`: clips per scoring batch.
    AudioSep's published numbers (its README) are recorded next to the run's. `on_result` gets each benchmark's
    `BenchmarkResult` when it is done, `on_stage` each stage as it starts (`dcase9.progress.Stage`: k of n, the
    time so far, what comes next).
    """
    from dcase9.hub import local_checkpoint
    from dcase9.suite import check_evaluation_dir, run_suite, suite_benchmarks
    from dcase9.systems import get_system, load_separator as load
    from dcase9.systems.catalog import audiosep_published_benchmarks

    spec = get_system(system)
    engine = EngineOptions(batch_size=batch_size, device=device, precision=precision, resampler=resampler,
                           workers=workers, overwrite=overwrite, progress=progress)
    engine.check()
    suite_benchmarks(only, query_column)  # refused before a model is loaded
    check_evaluation_dir(Path(evaluation_dir))
    require_folder(out, "the suite's results")
    check_no_overlap({"--out": out}, {"EVALUATION_DIR": evaluation_dir, "--checkpoint": local_checkpoint(checkpoint),
                                      **{f"--weight {name}": local_checkpoint(path)
                                         for name, path in (weights or {}).items()}})
    separator = load(system, checkpoint=checkpoint, weights=weights, system_options=system_options, engine=engine,
                     offline=offline, trust_checkpoint=trust_checkpoint)
    published = {p.benchmark: {"sdri": p.sdri, "sisdr": p.sisdr, "source": p.source}
                 for p in spec.published_benchmarks or audiosep_published_benchmarks()}
    return run_suite(separator, evaluation_dir, out, only=only, query=query_column, published=published,
                     device=device, batch_size=score_batch_size, workers=workers, progress=progress,
                     on_result=on_result, on_stage=on_stage)
