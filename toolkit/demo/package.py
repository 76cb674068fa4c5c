"""The demo's submission: `dcase9 demo` packages the small model it trains, as a real team would.

`package_demo` writes a submission.yaml in the documented schema (obviously fake authors: last
name `Demo`, institution `DCASE9`, an example.org address), a one-page technical report that
says it is the dcase9 demo and not a real submission, builds the zip with `build_package`, and
checks it again on its own with the evaluation data at hand (`dcase9 package --check ZIP
--data-synth ... --data-real ...`). Any error in either step raises `DemoPackageError`.

Everything written is deterministic (no dates), so a second demo run rebuilds identical files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dcase9.submission import CheckReport, Finding, PackageResult, build_package, check_package, count_checkpoint_parameters, \
    load_profile
from dcase9.submission.pdf import write_one_page_pdf
from dcase9.errors import Dcase9Error
from dcase9.files import write_text_atomic
from dcase9.metrics import registered_metrics
from dcase9.models.description import ENTRY

DEMO_SUBMITTER = {"lastname": "Demo", "abbreviation": "DCASE9"}
DEMO_AUTHOR = {
    "lastname": "Demo",
    "firstname": "Dcase9",
    "email": "demo@example.org",
    "corresponding": True,
    "affiliation": {"abbreviation": "DCASE9", "institute": "dcase9 toolkit demo (not a real institution)",
                    "location": "nowhere (a demo)"},
}
NOT_REAL = "dcase9 demo, not a real submission"
CONFIG_NAME = "submission.yaml"
REPORT_NAME = "technical_report.pdf"


class DemoPackageError(Dcase9Error):
    """The demo's package was refused by `build_package` or failed its check: a bug to report."""

    exit_code = 1  # the command ran and found problems (see toolkit/cli/_common.py)

    def __init__(self, message: str, findings: list[Finding]):
        self.findings = findings
        errors = [f for f in findings if f.severity == "error"]
        listed = "".join(f"\n  {f}" for f in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        super().__init__(f"{message}: {len(errors)} error(s){listed}{more}")


@dataclass
class DemoPackage:
    """What `package_demo` wrote: the config, the report, the zip, and both verdicts."""

    config: Path
    report: Path
    package: Path
    build: PackageResult
    check: CheckReport

    @property
    def ok(self) -> bool:
        return self.build.ok and self.check.ok


def describe_demo_model(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The meta YAML's free `system.description` of the model a demo checkpoint holds (its own
    configuration, as `dcase9 train` saved it)."""
    config = (checkpoint.get(ENTRY) or {}).get("config", {})
    model, data = config.get("model", {}), config.get("data", {})
    channels = model.get("channels") or []
    net = model.get("kind", "resunet30")
    if channels:
        net = (f"ResUNet ({net} design) with {len(channels)} levels, {channels[0]}-{channels[-1]} channels, "
               f"STFT {model.get('n_fft')}/{model.get('hop_length')}")
    query = config.get("query_encoder", {})
    return {
        "note": NOT_REAL,
        "separation_model": net,
        "query_encoder": f"CLAP text tower ({query.get('source', '?')} weights, frozen), "
                         f"{query.get('tokenizer', '?')} tokenizer",
        "training_data": "the demo training clips (8 synthetic sound classes, made by `dcase9 demo-data`)",
        "training": f"{checkpoint.get('global_step', '?')} steps, batch {data.get('batch_size', '?')}, "
                    f"{data.get('segment_seconds', '?')} s segments (`dcase9 train --preset demo`)",
    }


def demo_config(folder: Path, *, data: Mapping[str, Path], estimates: Mapping[str, Path], checkpoint: Path,
                development_report: Path, description: Mapping[str, Any]) -> dict[str, Any]:
    """A submission.yaml for the demo model (paths relative to `folder`, where it is written)."""
    def rel(path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()

    return {
        "submitter": dict(DEMO_SUBMITTER),
        "authors": [DEMO_AUTHOR],
        "technical_report": REPORT_NAME,
        "data": {subset: rel(path) for subset, path in data.items()},
        "systems": [{
            "index": 1,
            "name": "dcase9 demo model (small ResUNet, random tiny CLAP); not a real submission",
            "abbreviation": "Demo",
            "description": dict(description),
            "parameters": {"checkpoints": [rel(checkpoint)]},
            "external_data": [],
            "pretrained_models": [],
            "development_report": rel(development_report),
            "estimates": {subset: rel(path) for subset, path in estimates.items()},
        }],
    }


def report_text(description: Mapping[str, Any], parameters: int, results: Mapping[str, float],
                mixtures: Mapping[str, int], validation_mixtures: int) -> tuple[str, list[str]]:
    """The technical report's title and paragraphs."""
    title = "dcase9 demo - NOT A REAL DCASE SUBMISSION"
    scores = ", ".join(f"{metric.label} {results[metric.name]:.3f}{' ' + metric.unit if metric.unit else ''}"
                       for metric in registered_metrics() if metric.shown and metric.name in results)
    outputs = ", ".join(f"{n} {subset}" for subset, n in mixtures.items())
    paragraphs = [
        "Authors: Dcase9 Demo (dcase9 toolkit demo, demo@example.org). These are placeholder names.",
        "",
        "This one-page report was written by `dcase9 demo`, the offline self-test of the dcase9 toolkit "
        "for DCASE 2024 Task 9 (language-queried audio source separation). It belongs to a demo package "
        "built from synthetic data: it is not a real submission, and neither it nor its package should "
        "be uploaded to the challenge.",
        "",
        "Abstract. A small model is trained for a few minutes on two CPU cores on synthetic clips of "
        "eight sound classes, then separates the demo's stand-ins of the evaluation sets. The package "
        "shows the complete path from training to a checked submission zip; its numbers say nothing "
        "about the real task.",
        "",
        "System. " + "; ".join(f"{key.replace('_', ' ')}: {value}" for key, value in description.items()
                              if key != "note") + f". Parameters: {parameters:,}.",
        "",
        f"Development results on the demo validation set ({validation_mixtures} synthetic mixtures): "
        f"{scores or 'none'}.",
        "",
        f"Outputs: one per mixture of the demo evaluation sets ({outputs}).",
    ]
    return title, paragraphs


def package_demo(folder: str | Path, *, data: Mapping[str, Path], estimates: Mapping[str, Path],
                 checkpoint: Path, development_report: Path, progress: bool = False) -> DemoPackage:
    """Write `folder/submission.yaml` and its report, build `folder/<prefix>.zip`, and check it with
    the evaluation data. Raises DemoPackageError when the build is refused or the check fails."""
    import json

    from dcase9.models.checkpoints import read_checkpoint

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    profile = load_profile()
    description = describe_demo_model(read_checkpoint(checkpoint))
    parameters = count_checkpoint_parameters([checkpoint], profile.parameter_count.exclude).total
    summary = json.loads((Path(development_report) / "summary.json").read_text(encoding="utf-8"))
    mixtures = _mixture_counts(data)
    title, paragraphs = report_text(description, parameters, summary.get("mean", {}), mixtures,
                                    int(summary.get("scored") or 0))
    report = write_one_page_pdf(folder / REPORT_NAME, title, paragraphs, author="Dcase9 Demo")
    config = folder / CONFIG_NAME
    document = demo_config(folder, data=data, estimates=estimates, checkpoint=checkpoint,
                           development_report=development_report, description=description)
    header = (f"# The submission config of `dcase9 demo` ({NOT_REAL}): the schema of\n"
              "# docs/submission.example.yaml. Rebuild the package with\n"
              f"#   dcase9 package --config {CONFIG_NAME} --out PACKAGE.zip\n")
    write_text_atomic(config, header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    prefix = profile.label.prefix_template.format(lastname=DEMO_SUBMITTER["lastname"],
                                                  institution=DEMO_SUBMITTER["abbreviation"])
    package = folder / f"{prefix}.zip"
    build = build_package(config, package, profile=profile, progress=progress)
    if not build.ok:
        raise DemoPackageError(f"the demo package was refused ({config})", build.findings)
    check = check_package(package, profile=profile, data=data)
    if not check.ok:
        raise DemoPackageError(f"the demo package {package} fails its check", check.findings)
    return DemoPackage(config, report, package, build, check)


def _mixture_counts(data: Mapping[str, Path]) -> dict[str, int]:
    from dcase9.data.formats import open_dataset

    return {subset: len(open_dataset(path).mixtures) for subset, path in data.items()}
