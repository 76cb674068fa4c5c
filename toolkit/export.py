"""`dcase9 export`: a trained system as a folder anyone can load, from a folder or from the Hugging Face Hub.

    from dcase9.export import export_model
    result = export_model("runs/system1", "share/system1", describe_system=..., reports=["reports/val"])

The input is a checkpoint file, a training run folder (its last.ckpt, with the run's config.yaml and
summary.json), or a folder of `dcase9 export` (exported again, with a new card). The output is the
folder `dcase9.models.exported` describes; `dcase9.hub.push_folder` uploads it.

model.safetensors holds every tensor of the checkpoint's state dict except
- what is not weights (the optimizer's state, loops, callbacks are never part of the state dict);
- the separation net's fixed STFT tensors (`ss_model.base.stft.*`, `ss_model.base.istft.*`): every
  loader drops them and training rebuilds them;
- the query encoder (`query_encoder.model.*`) when it has the official CLAP architecture and its tensors
  equal those of the registry's stock CLAP (`clap-music-speech-audioset`), compared tensor by tensor except
  those no loader uses
  (`LAION_KEYS_DROPPED`): config.json then names the registry weight, which loaders fetch (and check)
  as they do for any checkpoint without a query encoder. When the stock CLAP cannot be had (offline
  and not cached), the query encoder is included and the result says so.
The tensors are copied as they are (same names, dtypes and values), so an export separates exactly as
its checkpoint does.

The model card (README.md) is written from what the checkpoint says about itself, the run's
config.yaml and summary.json when they are at hand, and the `dcase9 score` reports given; the
application layer says what the system is (`SystemCard`: this layer does not import the systems).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from dcase9.config import deep_merge
from dcase9.errors import CheckpointError, ConfigError, DataError
from dcase9.files import (atomic_output, check_no_overlap, require_folder, sha256_file, staged_folder,
                          write_json_atomic, write_text_atomic)
from dcase9.home import file_sha256
from dcase9.hub import HubReference, checkpoint_location, local_checkpoint
from dcase9.metrics import describe_metric, shown_metrics
from dcase9.models.checkpoints import read_checkpoint, require_finite, state_dict_of
from dcase9.models.clap import LAION_KEYS_DROPPED, ClapArchitecture, read_laion_clap_weights
from dcase9.models.description import CHECKPOINT_FORMAT, ENTRY, describe_checkpoint, tokenizer_files
from dcase9.models.exported import (CARD_FILE, CHECKSUMS_FILE, CONFIG_FILE, EXPORT_ENTRIES, EXPORT_FORMAT,
                                    QUERY_ENCODER_PREFIX, TOKENIZER_FOLDER, WEIGHTS_FILE, checksums_text,
                                    is_export_folder)
from dcase9.models.resunet import RESUNET30_IGNORED_KEYS
from dcase9.version import __version__
from dcase9.weights import CLAP_WEIGHT, TOKENIZER_WEIGHT, WeightResolver

RUN_CONFIG = "config.yaml"  # what `dcase9 train` writes into its run folder (dcase9.training.run)
RUN_SUMMARY = "summary.json"
RUN_CHECKPOINT = "last.ckpt"
NET_PREFIX = "ss_model."
# The separation net's fixed STFT tensors: every loader drops them (`RESUNET30_IGNORED_KEYS`).
FIXED_NET_KEYS = tuple(NET_PREFIX + pattern for pattern in RESUNET30_IGNORED_KEYS)
LICENSE_NOT_STATED = "other"
CARD_TAGS = ("dcase9", "audio", "audio-to-audio", "source-separation", "language-queried-audio-source-separation",
             "dcase2024-task9")
_UNUSED_LAION_KEYS = [re.compile(pattern) for pattern in LAION_KEYS_DROPPED]


@dataclass(frozen=True)
class SystemCard:
    """What the application layer says about the system that loads an export."""

    name: str  # canonical `--system` name
    title: str
    summary: str
    sample_rate: int
    checkpoint_weight: str  # the registry entry `--checkpoint` replaces
    other_weights: tuple[str, ...] = ()  # registry weights it loads besides (CLAP, tokenizer, VAE, ...)


@dataclass
class ExportResult:
    """What `export_model` wrote: the folder, its files (path -> bytes), and where the parts came from."""

    out: Path
    checkpoint: Path
    system: str
    files: dict[str, int]
    tensors: int
    query_encoder: str  # "included", or the registry weight it refers to
    tokenizer: str  # "included" (tokenizer/), or the registry weight
    notes: list[str] = field(default_factory=list)  # what the user should know (printed by the CLI)


@dataclass(frozen=True)
class _Report:
    folder: Path
    dataset: str  # "validation set (lass_validation, 3000 mixtures)"
    scored: int
    means: dict[str, float | None]
    metrics: list[str]
    identity: dict[str, Any] | None  # the run identity of the estimates scored (None: not recorded)


def find_checkpoint(source: str | Path) -> tuple[Path, Path | None]:
    """The checkpoint file (or export folder) `source` names, and the training run folder it belongs to
    (None when there is none): a run folder gives its last.ckpt; a checkpoint in a run folder (or in its
    checkpoints/) gives that run."""
    path = Path(source).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint, training run folder or export folder")
    if path.is_dir():
        if is_export_folder(path):
            return path, None
        if (path / RUN_CHECKPOINT).is_file():
            return path / RUN_CHECKPOINT, path
        raise CheckpointError(f"{path} is a folder without {RUN_CHECKPOINT}: give a checkpoint file, the folder of "
                              "a `dcase9 train` run, or a folder of `dcase9 export`")
    for folder in (path.parent, path.parent.parent):
        if (folder / RUN_CONFIG).is_file() and (folder / RUN_CHECKPOINT).exists():
            return path, folder
    return path, None


def export_model(source: str | Path, out: str | Path, *, describe_system: Callable[[str], SystemCard],
                 system: str | None = None, system_options: Mapping[str, Any] | None = None,
                 reports: Sequence[str | Path] = (), weights: Mapping[str, str | Path | HubReference] | None = None,
                 offline: bool = False, trust_checkpoint: bool = False, license: str = LICENSE_NOT_STATED,
                 datasets: Sequence[str] = (), base_model: str | None = None, repo: str | None = None,
                 progress: bool = True) -> ExportResult:
    """Write the export folder `out` from `source` (see the module docstring).

    `describe_system(name)` gives the `SystemCard` of a system name (refusing unknown ones); `system`
    names the system for a checkpoint that does not say (made elsewhere), and must agree with one that
    does; `system_options` are system settings over the checkpoint's own (as `--system-config`); `reports` are
    `dcase9 score` report folders for the card; `weights` are registry weights given by the user (the
    stock CLAP to compare with, a tokenizer folder). `license`, `datasets` (Hub dataset ids) and
    `base_model` (a Hub model id) go into the card's front matter; `repo` (owner/name) is where the
    folder will be published, for the card's loading commands.
    """
    out = Path(out)
    checkpoint_path, run_dir = find_checkpoint(source)
    explicit = {name: checkpoint_location(value) for name, value in (weights or {}).items()}
    inputs: dict[str, Path | None] = {"the checkpoint": checkpoint_path}
    if run_dir is not None:
        inputs.update({RUN_CONFIG: run_dir / RUN_CONFIG, RUN_SUMMARY: run_dir / RUN_SUMMARY})
    inputs.update({f"--report {report}": Path(report) for report in reports})
    inputs.update({f"--weight {name}": local_checkpoint(value) for name, value in explicit.items()})
    check_no_overlap({"--out": out}, inputs)
    require_folder(out, "the export")
    if repo is not None:
        HubReference.parse(repo)
    scored = [_read_report(Path(report)) for report in reports]  # a bad report is refused before the work

    # The folder is checked (it may hold only an earlier export) before the work; it is replaced at the end.
    with staged_folder(out, ours=EXPORT_ENTRIES, purpose="a folder of `dcase9 export`") as staging:
        plan = _plan(checkpoint_path, run_dir, explicit, describe_system, system, system_options, scored, offline=offline,
                     trust_checkpoint=trust_checkpoint, progress=progress)
        with atomic_output(staging / WEIGHTS_FILE) as tmp:
            _save_safetensors(plan.tensors, tmp)
        write_json_atomic(staging / CONFIG_FILE, plan.config)
        for name, text in plan.tokenizer.items():
            write_text_atomic(staging / TOKENIZER_FOLDER / name, text)
        listed = [WEIGHTS_FILE, CONFIG_FILE, *(f"{TOKENIZER_FOLDER}/{name}" for name in sorted(plan.tokenizer))]
        sums = {name: sha256_file(staging / name) for name in listed}
        sizes = {name: (staging / name).stat().st_size for name in listed}
        write_text_atomic(staging / CARD_FILE, model_card(
            plan.card, plan.config, plan.run, scored, sums, sizes, license=license, datasets=datasets,
            base_model=base_model or _hub_base_model(plan.run), repo=repo, out=out))
        sums[CARD_FILE] = sha256_file(staging / CARD_FILE)
        write_text_atomic(staging / CHECKSUMS_FILE, checksums_text(sums))
    files = {path.relative_to(out).as_posix(): path.stat().st_size for path in sorted(out.rglob("*")) if path.is_file()}
    return ExportResult(out, checkpoint_path, plan.card.name, files, len(plan.tensors),
                        plan.config["query_encoder"]["weight"] or "included",
                        "included" if plan.tokenizer else TOKENIZER_WEIGHT, plan.notes)


@dataclass
class _Plan:
    """What an export writes, decided before anything is written."""

    card: SystemCard
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]
    tokenizer: dict[str, str]  # file name -> text; empty: the registry's
    run: dict[str, Any]
    notes: list[str]


def _plan(checkpoint_path: Path, run_dir: Path | None, explicit: Mapping[str, Path | HubReference],
          describe_system: Callable[[str], SystemCard], system: str | None, given_options: Mapping[str, Any] | None,
          scored: Sequence[_Report], *, offline: bool, trust_checkpoint: bool, progress: bool) -> _Plan:
    resolver = WeightResolver(explicit, offline=offline, progress=progress)
    resolver.require(explicit)  # every path given exists, before the checkpoint is read
    notes: list[str] = []
    checkpoint = read_checkpoint(checkpoint_path, trust=trust_checkpoint)
    described = describe_checkpoint(checkpoint, str(checkpoint_path))
    card = _system_of(checkpoint_path, described.system if described else None, system, describe_system)
    system_options = deep_merge(described.options if described else {}, dict(given_options or {}))

    tensors = _inference_tensors(checkpoint, checkpoint_path)
    if described is not None and described.query_encoder_weight is not None:  # an export of one that refers
        reference: dict[str, str | None] | None = {"weight": described.query_encoder_weight,
                                                   "sha256": described.query_encoder_sha256}
    else:
        # The registry's CLAP has the official architecture: a query encoder of another is not it (unless
        # the user gives the file to compare with).
        official = ClapArchitecture.model_validate(system_options.get("clap") or {}) == ClapArchitecture()
        reference = _stock_query_encoder(tensors, resolver, notes) if official or CLAP_WEIGHT in explicit else None
    if reference is not None:
        tensors = {k: v for k, v in tensors.items() if not k.startswith(QUERY_ENCODER_PREFIX)}
    tokenizer = dict(described.tokenizer_files) if described and described.tokenizer_files else {}
    given_tokenizer = local_checkpoint(explicit[TOKENIZER_WEIGHT]) if TOKENIZER_WEIGHT in explicit else None
    if not tokenizer and given_tokenizer is not None:
        tokenizer = tokenizer_files(given_tokenizer)  # a checkpoint made elsewhere, with its tokenizer folder

    entry = dict(checkpoint.get(ENTRY) or {}) if isinstance(checkpoint, Mapping) else {}
    entry.pop("tokenizer_files", None)
    entry.pop("query_encoder", None)
    entry.update({"format": entry.get("format", CHECKPOINT_FORMAT), "system": card.name,
                  "system_options": system_options})
    source_sha256 = file_sha256(checkpoint_path) if checkpoint_path.is_file() else None
    source_facts: dict[str, Any] = {"file": checkpoint_path.name,
                    "sha256": source_sha256,
                    "global_step": _plain_int(checkpoint.get("global_step")),
                    "epoch": _plain_int(checkpoint.get("epoch"))}
    config = {"export_format": EXPORT_FORMAT, "dcase9_version": __version__, "system": card.name,
              "description": entry,
              "query_encoder": reference or {"weight": None, "sha256": None},
              "tokenizer": {"weight": None if tokenizer else TOKENIZER_WEIGHT, "files": sorted(tokenizer)},
              "source": source_facts}
    run = _run_facts(entry, run_dir, notes)
    for report in scored:
        _check_report_identity(report, source_sha256, card, notes)
    return _Plan(card, tensors, config, tokenizer, run, notes)


# ------------------------------------------------------------------------------------------------
# What goes in


def _system_of(path: Path, said: str | None, given: str | None,
               describe_system: Callable[[str], SystemCard]) -> SystemCard:
    if said is None and given is None:
        raise ConfigError(f"{path} does not say which system loads it (it was made elsewhere than `dcase9 train`): "
                          "name it with --system (see `dcase9 systems`)")
    if said is not None and given is not None:
        trained, asked = describe_system(said), describe_system(given)
        if trained.name != asked.name:
            raise ConfigError(f"{path} was trained for system '{trained.name}' (its {ENTRY} entry), not "
                              f"'{asked.name}': leave --system out, or export the checkpoint of a '{asked.name}' run")
        return trained
    return describe_system(given or said)  # type: ignore[arg-type]


def _plain_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _inference_tensors(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict's tensors a loader takes (see the module docstring), refused when not all finite."""
    import fnmatch

    state = state_dict_of(checkpoint)
    not_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: its state dict holds entries that are not tensors "
                              f"({', '.join(not_tensors[:10])}); it cannot be exported as weights")
    tensors = {k: v for k, v in state.items() if not any(fnmatch.fnmatchcase(k, p) for p in FIXED_NET_KEYS)}
    require_finite(tensors, source=str(path))
    return tensors


def _used_laion_keys(keys: Any) -> set[str]:
    return {k for k in keys if not any(p.fullmatch(k) for p in _UNUSED_LAION_KEYS)}


def _stock_query_encoder(tensors: Mapping[str, torch.Tensor], resolver: WeightResolver,
                         notes: list[str]) -> dict[str, str | None] | None:
    """{"weight": CLAP_WEIGHT, "sha256": ...} when the checkpoint's query encoder is the registry's stock
    CLAP (or it has none: loaders take the stock CLAP then); None when it must be included."""
    ours = {k[len(QUERY_ENCODER_PREFIX):]: v for k, v in tensors.items() if k.startswith(QUERY_ENCODER_PREFIX)}
    if not ours:
        return {"weight": CLAP_WEIGHT, "sha256": None}
    try:
        path = resolver(CLAP_WEIGHT)
        stock = read_laion_clap_weights(path)
    except CheckpointError as exc:
        first = str(exc).splitlines()[0].rstrip(".:")
        notes.append(f"the query encoder is included (about {_bytes(sum(t.nbytes for t in ours.values()))}): the "
                     f"registry's {CLAP_WEIGHT} could not be compared with it ({first}). Give it with --weight "
                     f"{CLAP_WEIGHT}=FILE, or export online, to refer to it instead when they are equal.")
        return None
    used = _used_laion_keys(ours)
    same = used == _used_laion_keys(stock) and all(
        ours[k].dtype == stock[k].dtype and ours[k].shape == stock[k].shape and torch.equal(ours[k], stock[k])
        for k in used)
    if not same:
        return None
    return {"weight": CLAP_WEIGHT, "sha256": resolver.resolved[CLAP_WEIGHT].sha256}


def _save_safetensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """safetensors wants contiguous CPU tensors that share no memory: a tensor sharing its storage with
    one already taken (a view, a tied weight) is copied; values and dtypes are unchanged."""
    import os

    from safetensors.torch import save_file

    mode = path.stat().st_mode  # safetensors writes a new file (0600): keep the mode `atomic_output` gave
    seen: set[int] = set()
    plain = {}
    for key in sorted(tensors):
        value = tensors[key].detach().to("cpu")
        storage = value.untyped_storage().data_ptr()
        if storage in seen or not value.is_contiguous():
            value = value.clone(memory_format=torch.contiguous_format)
        seen.add(value.untyped_storage().data_ptr())
        plain[key] = value
    save_file(plain, str(path), metadata={"format": "pt", "dcase9_export_format": str(EXPORT_FORMAT)})
    os.chmod(path, mode)


def _read_report(folder: Path) -> _Report:
    from dcase9.report.inputs import read_score_report

    scored = read_score_report(folder)
    summary = scored.summary
    dataset = summary.get("dataset", {})
    root = Path(str(summary.get("paths", {}).get("data") or dataset.get("root") or "")).name
    kind = str(dataset.get("kind", "?")).replace("-", " ")
    name = f"{kind} set" + (f" ({root}, {dataset.get('mixtures')} mixtures)" if root else "")
    means = summary.get("mean") if isinstance(summary.get("mean"), dict) else {}
    metrics = shown_metrics([m for m in summary.get("metrics", []) if isinstance(m, str)])
    values = {m: means.get(m) if isinstance(means.get(m), (int, float)) else None for m in metrics}
    identity = summary.get("system") if isinstance(summary.get("system"), dict) else None
    return _Report(folder, name, int(summary.get("scored") or 0), values, metrics, identity)


def _check_report_identity(report: _Report, checkpoint_sha: str | None, card: SystemCard, notes: list[str]) -> None:
    """A note when a report's estimates were made by another checkpoint than the one exported."""
    weights = report.identity.get("weights") if report.identity else None
    used = weights.get(card.checkpoint_weight) if isinstance(weights, dict) else None
    if used is None:
        notes.append(f"{report.folder}: its estimates carry no record of the checkpoint that made them; the card "
                     "shows its scores as given")
    elif checkpoint_sha is not None and used != checkpoint_sha:
        notes.append(f"{report.folder}: its estimates were made with {card.checkpoint_weight} {used}, not with the "
                     f"checkpoint exported (sha256 {checkpoint_sha}); the card shows its scores as given")


def _run_facts(entry: Mapping[str, Any], run_dir: Path | None, notes: list[str]) -> dict[str, Any]:
    """How the model was trained: the run's configuration (the checkpoint's copy, else config.yaml) and
    its summary.json, when they are at hand."""
    config = entry.get("config") if isinstance(entry.get("config"), dict) else None
    summary: dict[str, Any] = {}
    if run_dir is not None:
        if config is None and (run_dir / RUN_CONFIG).is_file():
            from dcase9.config import read_yaml

            loaded = read_yaml(run_dir / RUN_CONFIG)
            config = loaded if isinstance(loaded, dict) else None
        if (run_dir / RUN_SUMMARY).is_file():
            try:
                loaded = json.loads((run_dir / RUN_SUMMARY).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise DataError(f"cannot be read as JSON ({exc})", file=run_dir / RUN_SUMMARY) from None
            summary = loaded if isinstance(loaded, dict) else {}
        else:
            notes.append(f"{run_dir / RUN_SUMMARY} not found (the run did not finish?): the card gives the "
                         "configuration only")
    return {"config": config, "summary": summary}


def _hub_base_model(run: Mapping[str, Any]) -> str | None:
    """The Hub model a run started from, when it started from one (`--init hf://owner/name`)."""
    init = (run.get("config") or {}).get("init")
    if isinstance(init, str):
        location = checkpoint_location(init) if init.startswith("hf://") else None
        if isinstance(location, HubReference):
            return location.repo
    return None


# ------------------------------------------------------------------------------------------------
# The model card


def _bytes(n: float) -> str:
    """A size for people: 912 bytes, 4.2 MB, 1.3 GB."""
    if n < 1000:
        return f"{int(n)} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def _value(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def model_card(card: SystemCard, config: Mapping[str, Any], run: Mapping[str, Any], reports: Sequence[_Report],
               sums: Mapping[str, str], sizes: Mapping[str, int], *, license: str, datasets: Sequence[str],
               base_model: str | None, repo: str | None, out: Path) -> str:
    """README.md: the Hub's front matter, then what the system is, how to load it, how it was trained,
    its results and its files."""
    front: dict[str, Any] = {"library_name": "dcase9", "license": license, "tags": list(CARD_TAGS)}
    if datasets:
        front["datasets"] = list(datasets)
    if base_model:
        front["base_model"] = base_model
    where = f"hf://{repo}" if repo else str(out)
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {card.title} (dcase9 system `{card.name}`)", "",
             f"{card.summary} A language-queried audio source separation model (DCASE 2024 Task 9): given a "
             "mixture and a text query, it returns the sound the query describes. Exported with dcase9 "
             f"{config['dcase9_version']}.", "",
             "## Use", "",
             "```bash",
             f"dcase9 infer --system {card.name} --checkpoint {where} --data EVALUATION_SET --out ESTIMATES",
             "```", "", "```python", "from dcase9 import api", "",
             f'separator = api.load_separator("{card.name}", checkpoint="{where}")',
             'estimate = separator.separate(mixture_16k, "a dog barks")  # 16 kHz mono in and out', "```", "",
             f"The model runs at {card.sample_rate} Hz; dcase9 resamples 16 kHz audio to it and back. Loading reads "
             "JSON and safetensors only (nothing is unpickled) and checks every file against checksums.sha256."]
    reference = config["query_encoder"]["weight"]
    needed = [w for w in card.other_weights if w != reference and w != TOKENIZER_WEIGHT]
    parts = []
    if reference:
        parts.append(f"the query encoder is the registry's `{reference}` (its tensors are equal to this model's; "
                     "not copied here)")
    if config["tokenizer"]["weight"]:
        parts.append(f"the tokenizer is the registry's `{config['tokenizer']['weight']}`")
    if needed:
        parts.append("the system also loads " + ", ".join(f"`{w}`" for w in needed))
    if parts:
        lines += ["", "dcase9 fetches what is not in this folder from the registry (pinned revisions, checked "
                  "sums; `dcase9 download --list` says where): " + "; ".join(parts) + "."]
    lines += ["", "## Training", ""] + _training_lines(run, config) + ["", "## Results", ""]
    if reports:
        metrics = [m for m in ("sdr", "sdri", "sisdr", "ats") if any(m in r.metrics for r in reports)]
        metrics += [m for r in reports for m in r.metrics if m not in metrics]
        labels = [describe_metric(m).label + (f" ({describe_metric(m).unit})" if describe_metric(m).unit else "")
                  for m in metrics]
        lines += ["Means over the clips scored by `dcase9 score`:", "",
                  "| data set | clips scored | " + " | ".join(labels) + " |",
                  "|---|---:|" + "---:|" * len(metrics)]
        for report in reports:
            lines.append(f"| {report.dataset} | {report.scored} | "
                         + " | ".join(_value(report.means.get(m)) for m in metrics) + " |")
    else:
        lines.append("No `dcase9 score` report was given at export (`dcase9 export --report REPORT`).")
    lines += ["", "## Files", "", "| file | size | sha256 |", "|---|---:|---|"]
    lines += [f"| {name} | {_bytes(sizes[name])} | `{sums[name]}` |" for name in sorted(sizes)]
    lines += ["", f"{CHECKSUMS_FILE} lists them (and this card): `sha256sum -c {CHECKSUMS_FILE}`.", ""]
    if license == LICENSE_NOT_STATED:
        lines += ["License: not stated at export (`dcase9 export --license ID`); ask the authors.", ""]
    return "\n".join(lines)


def _training_lines(run: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    settings = run.get("config") or {}
    summary = run.get("summary") or {}
    source = config.get("source", {})
    if not settings:
        step = source.get("global_step")
        return [f"Not trained with `dcase9 train` (no configuration in the checkpoint); "
                f"{'step ' + str(step) + ' of its training' if step is not None else 'its training is not recorded'}."]
    data = settings.get("data") or {}
    trainer = settings.get("trainer") or {}
    optimizer = settings.get("optimizer") or {}
    files = [f"`{Path(str(spec.get('path', '?'))).name}`" + (f" (weight {spec['weight']:g})"
                                                             if isinstance(spec.get("weight"), (int, float))
                                                             and spec["weight"] != 1 else "")
             for spec in data.get("datafiles") or [] if isinstance(spec, dict)]
    init = settings.get("init")
    lines = [f"- Recipe: {settings['description'].strip()}" if settings.get("description") else "- Recipe: not described",
             f"- Training data: {', '.join(files) or 'not recorded'}",
             f"- Steps: {summary.get('global_step', source.get('global_step', '?'))}"
             + (f" of {trainer['max_steps']}" if trainer.get("max_steps") else "")
             + (f" ({summary['status']})" if summary.get("status") else ""),
             f"- Seed: {settings.get('seed', '?')}",
             f"- Batch: {data.get('batch_size', '?')} clips of {data.get('segment_seconds', '?')} s per device"
             + (f" on {summary['world_size']} device(s)" if summary.get("world_size") else "")
             + (f", precision {summary.get('precision') or trainer.get('precision')}"
                if summary.get("precision") or trainer.get("precision") else ""),
             f"- Optimizer: {optimizer.get('name', '?')}, learning rate {optimizer.get('lr', '?')}",
             f"- Started from: {Path(init).name if isinstance(init, str) and not init.startswith('hf://') else init or 'random weights'}"]
    validation: dict[str, Any] = summary["validation"] if isinstance(summary.get("validation"), dict) else {}
    shown = [f"{key.split('/', 1)[-1]} {_value(value)}" for key, value in validation.items()
             if isinstance(value, (int, float))]
    if shown:
        lines.append(f"- Last validation during training: {', '.join(shown)}")
    return lines
