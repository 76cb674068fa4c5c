"""`run_demo`: the main job on the demo data, end to end, through the API's verbs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcase9.api import infer, report, score, validate
from dcase9.data.demo import make_demo
from dcase9.demo.model import train_demo_model
from dcase9.demo.package import package_demo
from dcase9.engine import RunResult
from dcase9.errors import ConfigError, Dcase9Error, MissingDependencyError
from dcase9.files import require_folder
from dcase9.lazy import require
from dcase9.outputs import run_manifest
from dcase9.progress import Stage, StagePlan
from dcase9.scoring import ScoreReport


@dataclass
class DemoResult:
    """What `run_demo` did: score reports by system (the trained model as "trained"), the training
    run (None when skipped), the trained model's package (a `dcase9.demo.package.DemoPackage`: its
    config, report, zip and check; None when skipped), and the seconds each stage took."""

    reports: dict[str, ScoreReport]
    training: Any = None  # dcase9.training.TrainResult
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    package: Any = None  # dcase9.demo.package.DemoPackage
    evaluation: dict[str, RunResult] = field(default_factory=dict)  # subset -> the trained model's run on it
    model_status: str | None = None  # trained, resumed, retrained (and why) or reused: see train_demo_model
    page: Any = None  # dcase9.report.ReportResult: the listening page of the validation reports


DEMO_EVALUATION_SETS = ("eval-synth", "eval-real")


# The demo's stages, in order (`dcase9 demo` prints each as it starts).
DATA_STAGE = "demo data: synthesise and validate"
SYSTEM_STAGE = "separate and score the validation set with"  # + the system's name
TRAIN_STAGE = "train the demo model"
TRAINED_STAGE = "separate and score the validation set with the trained model"
PAGE_STAGE = "the listening page"
EVALUATION_STAGE = "separate the evaluation sets with the trained model"
PACKAGE_STAGE = "package the outputs as a (demo) submission and check it"
TRAINED_STAGES = (TRAIN_STAGE, TRAINED_STAGE, PAGE_STAGE, EVALUATION_STAGE, PACKAGE_STAGE)

# What `out` holds after a demo: an existing folder with anything else in it is refused.
DEMO_ENTRIES = ("data", "estimates", "reports", "report", "model", "submission")


def run_demo(out: str | Path, *, systems: tuple[str, ...] = ("mixture", "oracle"), train_model: bool = True,
             progress: bool = True, data_options: dict[str, Any] | None = None,
             train_overrides: list[dict[str, Any]] | None = None, force_data: bool = False,
             announce: Callable[[str], None] | None = None,
             on_stage: Callable[[Stage], None] | None = None) -> DemoResult:
    """The main job on the embedded demo data, offline: synthesise -> validate -> train a small model
    on the demo training clips (`dcase9 train --preset demo`) -> separate with each system and the
    trained model -> score -> infer the trained model on the demo evaluation sets -> package its
    outputs as a (demo) submission -> check the package with the evaluation data. A listening page
    of the validation reports (`dcase9 report`) lands in `out/report/index.html`.

    A finished demo model in `out/model` is reused when its configuration is unchanged; an
    interrupted one is resumed; finished estimates are kept. The package is rebuilt on every run
    (it is deterministic: the same inputs give the same bytes). A package that is refused or fails
    its check raises `dcase9.demo.package.DemoPackageError`. `data_options` (arguments of `make_demo`)
    and `train_overrides` (configuration layers on the demo preset) let tests run a smaller demo.
    Demo data in `out/data` that was edited is refused unless `force_data` (see `make_demo`).
    `announce` gets one line saying whether the model is trained, resumed, retrained (and why) or
    reused, before that happens; the line is also the result's `model_status`. `on_stage` gets each
    stage as it starts (a `dcase9.progress.Stage`: k of n, the time so far, what comes next). A demo
    folder that was moved or copied recovers by itself: estimates made from the data at its old place
    are computed again.
    """
    notes = []
    if train_model:
        try:
            require("lightning", extra="train", purpose="training the demo model")
        except MissingDependencyError as exc:
            notes.append(f"skipped the trained model and its package: {exc}")
            train_model = False
    plan = StagePlan([DATA_STAGE, *(f"{SYSTEM_STAGE} {system}" for system in systems),
                      *(TRAINED_STAGES if train_model else (PAGE_STAGE,))], on_stage)
    out = Path(out)
    require_folder(out, "the demo workspace")
    # The demo writes, deletes and retrains in its own folders; a folder of the user's is not its workspace.
    foreign = sorted(e.name for e in out.iterdir() if e.name not in DEMO_ENTRIES) if out.is_dir() else []
    if foreign:
        raise ConfigError(f"{out} holds files that are not the demo's ({', '.join(foreign[:5])}"
                          f"{' ...' if len(foreign) > 5 else ''}); give a new folder, or one an earlier demo made")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    plan.start(DATA_STAGE)
    folders = make_demo(out / "data", **(data_options or {}), force=force_data)
    validation = validate(folders["validation"])
    if not validation.usable:
        raise Dcase9Error(f"the generated demo data did not validate: {validation.errors[0]}")
    seconds["data"] = time.perf_counter() - clock
    reports = {}
    for system in systems:
        clock = time.perf_counter()
        plan.start(f"{SYSTEM_STAGE} {system}")
        estimates = out / "estimates" / system
        infer(system, folders["validation"], estimates, progress=progress,
              overwrite=made_elsewhere(estimates, folders["validation"]))
        reports[system] = score(folders["validation"], out / "estimates" / system, out / "reports" / system,
                                progress=progress)
        seconds[system] = time.perf_counter() - clock
    result = DemoResult(reports, seconds=seconds, notes=notes)
    if not train_model:
        plan.start(PAGE_STAGE)  # the last stage then
        demo_page(out, result)
        return result
    clock = time.perf_counter()
    plan.start(TRAIN_STAGE)
    result.training, load = train_demo_model(folders["train"] / "train.json", out / "model", progress=progress,
                                             overrides=train_overrides, announce=announce)
    result.model_status = load["why"]
    seconds["training"] = time.perf_counter() - clock

    def run_trained(data: Path, estimates: Path) -> RunResult:
        # A model trained in this run replaces the estimates of an earlier one.
        return infer("baseline", data, estimates, progress=progress,
                     overwrite=load["trained_now"] or made_elsewhere(estimates, data),
                     checkpoint=load["checkpoint"], offline=True)

    clock = time.perf_counter()
    plan.start(TRAINED_STAGE)
    run_trained(folders["validation"], out / "estimates" / "trained")
    reports["trained"] = score(folders["validation"], out / "estimates" / "trained", out / "reports" / "trained",
                               progress=progress)
    seconds["trained"] = time.perf_counter() - clock
    plan.start(PAGE_STAGE)
    demo_page(out, result)
    clock = time.perf_counter()
    plan.start(EVALUATION_STAGE)
    evaluation_estimates = {subset: out / "estimates" / f"trained-{subset}" for subset in DEMO_EVALUATION_SETS}
    for subset, estimates in evaluation_estimates.items():
        result.evaluation[subset] = run_trained(folders[subset], estimates)
    seconds["evaluation"] = time.perf_counter() - clock
    clock = time.perf_counter()
    plan.start(PACKAGE_STAGE)
    result.package = package_demo(out / "submission", data={s: folders[s] for s in DEMO_EVALUATION_SETS},
                                  estimates=evaluation_estimates, checkpoint=load["checkpoint"],
                                  development_report=out / "reports" / "trained", progress=progress)
    seconds["package"] = time.perf_counter() - clock
    return result


def made_elsewhere(estimates: Path, data: Path) -> bool:
    """Whether a demo estimates folder was made from the data at another place (the demo folder was moved
    or copied): the demo owns it, so it is computed again instead of refused."""
    recorded = ((run_manifest(estimates) or {}).get("dataset") or {}).get("csv")
    return isinstance(recorded, str) and Path(recorded).resolve().parent != Path(data).resolve()


def demo_page(out: Path, result: DemoResult) -> None:
    """The listening page of the demo's validation reports, the trained model first (the page
    opens on its worst clips), named by their folders."""
    clock = time.perf_counter()
    names = sorted(result.reports, key=lambda name: name != "trained")
    result.page = report([out / "reports" / name for name in names], out / "report", names=names)
    result.seconds["report"] = time.perf_counter() - clock
