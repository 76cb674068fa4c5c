"""The Python API: the same verbs as the `dcase9` command line.

    from toolkit import api
    report = api.validate("lass_validation_dir")
    api.separate("oracle", "lass_validation_dir", "estimates/oracle")
    scores = api.score("lass_validation_dir", "estimates/oracle", out="reports/oracle")
    page = api.report(["reports/oracle", "reports/baseline"], "reports/page")
    run = api.train("runs/system1", preset="system1", overrides={"data": {"datafiles": ["aug.json"]}})
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.audio import SAMPLE_RATE, write_wav
from toolkit.data.formats import DataSet, SetKind, open_dataset
from toolkit.data.items import ItemLoader, LoadFailure
from toolkit.data.validate import EXPECTED_SECONDS, ValidationReport, validate_dataset
from toolkit.engine import EngineOptions, RunResult, progress_bar, resolve_device, run_separation
from toolkit.errors import Dcase9Error
from toolkit.files import require_folder, write_text_atomic
from toolkit.outputs import OutputFolder, Problem
from toolkit.scoring import ScoreReport, score_estimates


def validate(data: str | Path, *, kind: str | None = None, csv_path: str | Path | None = None,
             check_audio: bool = True, expected_seconds: float | None = EXPECTED_SECONDS) -> ValidationReport:
    """Check an evaluation-set folder; see `ValidationReport.usable()`."""
    return validate_dataset(data, kind, csv_path, check_audio=check_audio, expected_seconds=expected_seconds)


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
    written), with a manifest and ledger as `infer` keeps them (see `toolkit.outputs`): a re-run
    keeps the pairs that still match their rows and clips. The references are the target clips as
    scaled by the evaluator (0.9/peak when the mixture clips). A row whose clips cannot be used
    (missing, unreadable, truncated, NaN) is left out and listed in `MixResult.problems`.
    """
    dataset = open_dataset(data)
    if dataset.kind is not SetKind.VALIDATION:
        raise Dcase9Error(f"`mix` builds validation mixtures; the {dataset.kind.value} set ships its mixtures "
                          f"already ({dataset.audio_dir})")
    out = Path(out)
    subtype = "PCM_16" if pcm16 else "FLOAT"

    def outputs_of(output_id: str) -> list[Path]:
        return [out / "mixtures" / f"{output_id}.wav", out / "references" / f"{output_id}.wav"]

    problems: list[Problem] = []
    written = 0
    folder = OutputFolder(out, "mix", dataset, {"command": "mix", "subtype": subtype}, overwrite=overwrite,
                          outputs_of=outputs_of)
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
                    mixture_path, reference_path = outputs_of(item.spec.id)
                    write_wav(mixture_path, item.mixture, SAMPLE_RATE, subtype)
                    write_wav(reference_path, item.reference, SAMPLE_RATE, subtype)  # type: ignore[arg-type]
                    folder.record(item.spec.id, len(item.mixture))
                    written += 1
                if bar is not None and task is not None:
                    bar.update(task, advance=1)
        finished = folder.finished(dataset.mixtures)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["id", "mixture", "reference", "source", "noise", "snr", "caption"])
        for m in finished:
            writer.writerow([m.id, f"mixtures/{m.id}.wav", f"references/{m.id}.wav", m.source, m.noise, m.snr,
                             m.query])
        write_text_atomic(out / "mixtures.csv", buffer.getvalue())
        folder.write_manifest({"status": "incomplete" if problems else "complete", "planned": len(dataset.mixtures),
                               "written": written, "kept": len(dataset.mixtures) - len(todo),
                               "problems": [{"id": p.id, "message": p.message} for p in problems]})
    return MixResult(out, written, len(dataset.mixtures) - len(todo), problems, folder.orphans)


def separate(system: str, data: str | Path | DataSet, out: str | Path, *,
             options: EngineOptions | None = None, system_options: dict[str, Any] | None = None,
             checkpoint: str | Path | None = None, weights: dict[str, str | Path] | None = None,
             offline: bool = False, trust_checkpoint: bool = False) -> RunResult:
    """Run a registered system over an evaluation set, writing `out/<id>.wav` at 16 kHz.

    `checkpoint` replaces the system's main weights (its first registry entry); `weights` maps any
    registry name to a local path; `offline` forbids downloads; `system_options` override the
    system's typed configuration (e.g. `{"n_fft": 1024}`).
    """
    from systems import get_system
    from systems.base import BuildContext, build_separator
    from toolkit.weights import WeightResolver

    spec = get_system(system)
    options = options or EngineOptions()
    options.check()
    require_folder(out, "the estimates")  # before a model is loaded for nothing
    dataset = open_dataset(data)
    if spec.needs_reference and not dataset.has_references:
        raise Dcase9Error(f"system '{spec.name}' needs references; the {dataset.kind.value} set has none")
    explicit = {name: Path(path) for name, path in (weights or {}).items()}
    if checkpoint is not None:
        if not spec.weights:
            raise Dcase9Error(f"system '{spec.name}' uses no checkpoint")
        explicit[spec.weights[0]] = Path(checkpoint)
    resolver = WeightResolver(explicit, offline=offline, progress=options.progress)
    merged_options = {**spec.options, **(system_options or {})}
    context = BuildContext(device=resolve_device(options.device), options=merged_options, weight=resolver,
                           trust_checkpoint=trust_checkpoint)
    separator = build_separator(spec, context)
    identity = {"system": spec.name, "weights": resolver.identity(), "options": merged_options}
    return run_separation(separator, dataset, out, identity=identity, options=options,
                          reference_needed=spec.needs_reference, default_segment_seconds=spec.segment_seconds,
                          settings={"weights": {n: str(r.path) for n, r in resolver.resolved.items()}})


def download(system: str, *, include_optional: bool = False, offline: bool = False,
             progress: bool = True) -> dict[str, Path]:
    """Fetch every weight a system needs ahead of time; returns their local paths."""
    from systems import get_system
    from toolkit.weights import WeightResolver

    spec = get_system(system)
    resolver = WeightResolver(offline=offline, progress=progress)
    names = spec.weights + (spec.optional_weights if include_optional else ())
    return {name: resolver(name) for name in names}


def load_ats_scorer(*, checkpoint: str | Path | None = None, weights: dict[str, str | Path] | None = None,
                    mode: str = "resample", clap: dict[str, Any] | None = None, offline: bool = False,
                    trust_checkpoint: bool = False, device: str = "auto", progress: bool = True) -> Any:
    """The CLAP model ATS uses: by default the standalone laion CLAP file of the registry (the query
    encoder's weights); `checkpoint` may be another laion `.pt` or a baseline/AudioSep `.ckpt`
    (its `query_encoder.model.*` part). `clap` overrides the architecture (ClapArchitecture fields)."""
    from toolkit.weights import WeightResolver
    from toolkit.ats import AtsScorer
    from toolkit.models.clap import ClapArchitecture, ClapEncoder, load_roberta_tokenizer, read_laion_clap_weights

    resolver = WeightResolver({k: Path(v) for k, v in (weights or {}).items()}, offline=offline, progress=progress)
    tokenizer = load_roberta_tokenizer(resolver("roberta-base-tokenizer"))
    path = Path(checkpoint) if checkpoint is not None else resolver("clap-music-speech-audioset")
    laion = read_laion_clap_weights(path, trust=trust_checkpoint)
    architecture = ClapArchitecture(**(clap or {}))
    encoder = ClapEncoder.from_laion_weights(laion, tokenizer=tokenizer, spec=architecture.spec(), source=str(path),
                                             device=resolve_device(device))
    return AtsScorer(encoder, mode=mode)  # type: ignore[arg-type]


def score(data: str | Path | DataSet, estimates: str | Path, out: str | Path | None = None, *,
          device: str = "auto", batch_size: int = 32, progress: bool = True, ats: Any = None) -> ScoreReport:
    """Official metrics of a folder of estimates; writes the report files when `out` is given.

    `ats`: an `AtsScorer` (see `load_ats_scorer`) to add the reference-free ATS column; with it,
    evaluation sets (no references) are scored by ATS alone.
    """
    extra = {"ats": ats} if ats is not None else None
    return score_estimates(data, estimates, out, device=device, batch_size=batch_size, progress=progress,
                           extra_metrics=extra)


def report(reports: list[str | Path], out: str | Path, **options: Any) -> Any:
    """A listening page and a paired comparison from `score` report folders of the same data set
    and clips (`dcase9 report`): `out/index.html`, `out/comparison.json`, `out/comparison.png`.

    Options (see `toolkit.report.build_report`): `names` (one per report), `data` (the data set's
    folder when it has moved), `spectrograms` and `spectrogram_seconds` (the image budget),
    `metric`, `tie_margin`, `resamples`, `seed`, `confidence` (the comparison), `self_contained`
    (copy the estimates into `out`), `mixed` (a `dcase9 mix` folder to play instead of writing audio). Returns a `toolkit.report.ReportResult`.
    """
    from toolkit.report import build_report

    return build_report(reports, out, **options)


def train(out: str | Path, *, preset: str | None = None, config: str | Path | None = None,
          overrides: dict[str, Any] | None = None, resume: bool = False, progress: bool = True) -> Any:
    """Train a separation model (`dcase9 train`): `preset`, then the YAML `config`, then `overrides`
    (a nested mapping, e.g. `{"data": {"datafiles": ["train.json"]}, "trainer": {"max_steps": 1000}}`).
    With `resume=True` the run in `out` continues from its saved configuration and last.ckpt.
    Returns a `toolkit.training.TrainResult`; see docs/training.md.
    """
    from toolkit.config import read_yaml
    from toolkit.training import assemble_config
    from toolkit.training import train as run_training
    from toolkit.training.run import CONFIG_FILE

    base = read_yaml(Path(out) / CONFIG_FILE) if resume else None
    if resume and preset is not None:
        raise Dcase9Error("resume continues the run's saved configuration; preset applies to new runs only")
    train_config = assemble_config(preset=preset, config_file=config, overrides=[overrides] if overrides else [],
                                   base=base)
    return run_training(train_config, out, system=system_facts(train_config.system), resume=resume,
                        progress=progress)


def system_facts(name: str | None) -> Any:
    """What training needs to know of the system that will load its checkpoints (`config.system`;
    None: System 1, the baseline's architecture), as a `toolkit.training.SystemFacts`: its rate,
    default options, and the `dcase9 infer` command line that loads a checkpoint."""
    from systems import get_system
    from toolkit.training import SystemFacts

    system = name or "1"
    spec = get_system(system)
    # What inference loads besides the checkpoint: local copies of these are passed on with --weight.
    loaded = set(spec.weights[1:]) | set(spec.optional_weights)

    def infer_command(checkpoint: Path, system_config: Path | None, local_weights: Any) -> str:
        parts = ["dcase9 infer", f"--system {system}", f"--checkpoint {checkpoint}", "--data VALIDATION_DIR",
                 "--out ESTIMATES_DIR"]
        if system_config is not None:
            parts.append(f"--system-config {system_config}")
        parts += [f"--weight {weight}={path}" for weight, path in local_weights.items() if weight in loaded]
        return " ".join(parts)

    return SystemFacts(spec.name, spec.sample_rate, dict(spec.options), infer_command)


@dataclass
class DemoResult:
    """What `run_demo` did: score reports by system (the trained model as "trained"), the training
    run (None when skipped), the trained model's package (a `submission.demo.DemoPackage`: its
    config, report, zip and check; None when skipped), and the seconds each stage took."""

    reports: dict[str, ScoreReport]
    training: Any = None  # toolkit.training.TrainResult
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    package: Any = None  # submission.demo.DemoPackage
    evaluation: dict[str, RunResult] = field(default_factory=dict)  # subset -> the trained model's run on it
    model_status: str | None = None  # trained, resumed, retrained (and why) or reused: see train_demo_model
    page: Any = None  # toolkit.report.ReportResult: the listening page of the validation reports


DEMO_EVALUATION_SETS = ("eval-synth", "eval-real")


def run_demo(out: str | Path, *, systems: tuple[str, ...] = ("mixture", "oracle"), train_model: bool = True,
             progress: bool = True, data_options: dict[str, Any] | None = None,
             train_overrides: list[dict[str, Any]] | None = None, force_data: bool = False,
             announce: Callable[[str], None] | None = None) -> DemoResult:
    """The main job on the embedded demo data, offline: synthesise -> validate -> train a small model
    on the demo training clips (`dcase9 train --preset demo`) -> separate with each system and the
    trained model -> score -> infer the trained model on the demo evaluation sets -> package its
    outputs as a (demo) submission -> check the package with the evaluation data. A listening page
    of the validation reports (`dcase9 report`) lands in `out/report/index.html`.

    A finished demo model in `out/model` is reused when its configuration is unchanged; an
    interrupted one is resumed; finished estimates are kept. The package is rebuilt on every run
    (it is deterministic: the same inputs give the same bytes). A package that is refused or fails
    its check raises `submission.demo.DemoPackageError`. `data_options` (arguments of `make_demo`)
    and `train_overrides` (configuration layers on the demo preset) let tests run a smaller demo.
    Demo data in `out/data` that was edited is refused unless `force_data` (see `make_demo`).
    `announce` gets one line saying whether the model is trained, resumed, retrained (and why) or
    reused, before that happens; the line is also the result's `model_status`.
    """
    from toolkit.data.demo import make_demo

    out = Path(out)
    require_folder(out, "the demo workspace")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    folders = make_demo(out / "data", **(data_options or {}), force=force_data)
    report = validate(folders["validation"])
    if not report.usable():
        raise Dcase9Error(f"the generated demo data did not validate: {report.errors[0]}")
    seconds["data"] = time.perf_counter() - clock
    reports = {}
    for system in systems:
        clock = time.perf_counter()
        separate(system, folders["validation"], out / "estimates" / system, options=EngineOptions(progress=progress))
        reports[system] = score(folders["validation"], out / "estimates" / system, out / "reports" / system,
                                progress=progress)
        seconds[system] = time.perf_counter() - clock
    result = DemoResult(reports, seconds=seconds)
    if train_model:
        from toolkit.errors import MissingDependencyError
        from toolkit.lazy import require

        try:
            require("lightning", extra="train", purpose="training the demo model")
        except MissingDependencyError as exc:
            result.notes.append(f"skipped the trained model and its package: {exc}")
            train_model = False
    if not train_model:
        demo_page(out, result)
        return result
    clock = time.perf_counter()
    result.training, load = train_demo_model(folders["train"] / "train.json", out / "model", progress=progress,
                                             overrides=train_overrides, announce=announce)
    result.model_status = load["why"]
    seconds["training"] = time.perf_counter() - clock

    def run_trained(data: Path, estimates: Path) -> RunResult:
        # A model trained in this run replaces the estimates of an earlier one.
        return separate("baseline", data, estimates,
                        options=EngineOptions(progress=progress, overwrite=load["trained_now"]),
                        checkpoint=load["checkpoint"], weights={"roberta-base-tokenizer": load["tokenizer"]},
                        system_options=load["system_options"], offline=True)

    clock = time.perf_counter()
    run_trained(folders["validation"], out / "estimates" / "trained")
    reports["trained"] = score(folders["validation"], out / "estimates" / "trained", out / "reports" / "trained",
                               progress=progress)
    seconds["trained"] = time.perf_counter() - clock
    demo_page(out, result)
    clock = time.perf_counter()
    evaluation_estimates = {subset: out / "estimates" / f"trained-{subset}" for subset in DEMO_EVALUATION_SETS}
    for subset, estimates in evaluation_estimates.items():
        result.evaluation[subset] = run_trained(folders[subset], estimates)
    seconds["evaluation"] = time.perf_counter() - clock
    clock = time.perf_counter()
    from submission.demo import package_demo  # submission/ builds on toolkit/, not the reverse

    result.package = package_demo(out / "submission", data={s: folders[s] for s in DEMO_EVALUATION_SETS},
                                  estimates=evaluation_estimates, checkpoint=load["checkpoint"],
                                  development_report=out / "reports" / "trained", progress=progress)
    seconds["package"] = time.perf_counter() - clock
    return result


def demo_page(out: Path, result: DemoResult) -> None:
    """The listening page of the demo's validation reports, the trained model first (the page
    opens on its worst clips), named by their folders."""
    clock = time.perf_counter()
    names = sorted(result.reports, key=lambda name: name != "trained")
    result.page = report([out / "reports" / name for name in names], out / "report", names=names)
    result.seconds["report"] = time.perf_counter() - clock


def train_demo_model(train_json: Path, run_dir: Path, *, progress: bool = True,
                     overrides: list[dict[str, Any]] | None = None,
                     announce: Callable[[str], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train (or reuse, or resume) the demo preset's model; return the run and what loads it.

    `overrides` are configuration layers on top of the demo preset (tests use a smaller net).
    What is done and why (no model yet, an interrupted run, settings that changed, or a finished
    model reused) is given to `announce` before it starts, and returned as `why`.
    """
    import shutil

    from toolkit.models.checkpoints import read_checkpoint
    from toolkit.training import assemble_config, train
    from toolkit.training.config import config_as_dict
    from toolkit.training.run import LAST_CHECKPOINT, SUMMARY_FILE, TrainResult, infer_settings

    config = assemble_config(preset="demo", overrides=[{"data": {"datafiles": [str(train_json)]}},
                                                       *(overrides or [])])
    last = run_dir / LAST_CHECKPOINT
    result = None
    trained_now = True
    why = f"training the demo model in {run_dir} (no model there yet)"
    if last.is_file():
        saved = read_checkpoint(last)
        changed = changed_settings(saved.get("dcase9", {}).get("config") or {}, config_as_dict(config))
        steps, total = int(saved.get("global_step", 0)), config.trainer.max_steps or 0
        if changed:
            why = (f"training the demo model in {run_dir} again: it was trained with other settings "
                   f"({'; '.join(changed)})")
            if any(key.startswith("data.datafiles") for key in changed):
                why += ". The demo data are elsewhere now: was the demo folder moved or copied?"
        elif steps < total:
            why = f"resuming the interrupted demo training in {run_dir} at step {steps} of {total}"
        else:
            why = f"reusing the demo model trained earlier in {run_dir} ({steps} steps, same settings)"
    if announce is not None:
        announce(why)
    if last.is_file():
        if changed:
            shutil.rmtree(run_dir)  # made by another version of the demo, or for data elsewhere: start over
        elif steps < total:
            result = train(config, run_dir, system=system_facts(config.system), resume=True, progress=progress,
                           lightning_info=False)
        else:
            trained_now = False
            summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
            result = TrainResult(run_dir, last, int(saved["global_step"]), float(summary.get("seconds", 0.0)),
                                 summary.get("throughput", {}), summary.get("skipped", {}),
                                 summary.get("validation", {}), summary.get("infer_command", ""))
    if result is None:
        result = train(config, run_dir, system=system_facts(config.system), progress=progress, lightning_info=False)
    system_options = infer_settings(config, read_checkpoint(last)["dcase9"]["system_options"])
    return result, {"checkpoint": last, "tokenizer": run_dir / "tokenizer", "system_options": system_options,
                    "trained_now": trained_now, "why": why}


def changed_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for every setting (dotted key) that differs between two nested configurations."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += changed_settings(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes
