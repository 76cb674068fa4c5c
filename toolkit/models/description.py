"""What a checkpoint written by `dcase9 train` says about itself: writing and reading its `dcase9` entry.

Beside the weights, every checkpoint of a training run holds a `dcase9` entry in plain types (it
loads with `torch.load(weights_only=True)`):

- `system`: the `--system` that loads it (`system:` of the training configuration; None: not said);
- `system_options`: the settings that build its net and CLAP as that system (what a separate
  `--system-config` file used to carry): the net's options and, when it is not the official one,
  the CLAP architecture;
- `tokenizer_files`: the tokenizer's files as text (`vocab.json`, `merges.txt`, ...), when the run's
  tokenizer is not the registry's roberta-base (the tiny ones, or a folder);
- `format`, `config` (the run's whole configuration), `model_kind`, `sample_rate`, `tokenizer`
  (where the run found its tokenizer).

Training writes it (`dcase9.training.module`); `dcase9.systems.loading` reads it when a checkpoint is
given, and `dcase9 infer` and `api.load_separator` take its options and tokenizer as defaults under
what the user passes (`--system-config` / `options=` key by key, `--weight roberta-base-tokenizer=DIR`),
as Asteroid's `from_pretrained` does. Checkpoints made elsewhere (no `dcase9` entry) load exactly as
before. Checkpoints of format 1 stored the net's options only: their CLAP architecture is read from
their configuration, and their tokenizer comes from `--weight` as it did then.

It lives with the models because both sides use it: training below the systems writes it, the
systems' loader reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcase9.errors import CheckpointError
from dcase9.models.clap.architecture import ClapArchitecture  # the module: `dcase9.models.exported` reads us
from dcase9.models.clap.tokenizer import REQUIRED_TOKENIZER_FILES, TOKENIZER_FOLDER_FILES

ENTRY = "dcase9"
CHECKPOINT_FORMAT = 2  # 1: system_options held the net's options only, no tokenizer files


def inference_options(net_options: Mapping[str, Any], architecture: ClapArchitecture) -> dict[str, Any]:
    """The system settings that build a trained net and its CLAP: the net's own options, and the CLAP
    architecture when it is not the official one."""
    options = dict(net_options)
    if architecture != ClapArchitecture():
        options["clap"] = architecture.model_dump(mode="json")
    return options


def tokenizer_files(folder: str | Path) -> dict[str, str]:
    """The files of a tokenizer folder that a checkpoint carries, as text."""
    folder = Path(folder)
    return {name: (folder / name).read_text(encoding="utf-8") for name in TOKENIZER_FOLDER_FILES
            if (folder / name).is_file()}


@dataclass(frozen=True)
class CheckpointDescription:
    """The `dcase9` entry of a checkpoint, checked: the system, its options, the tokenizer's files."""

    source: str
    system: str | None
    options: dict[str, Any] = field(default_factory=dict)
    tokenizer_files: dict[str, str] = field(default_factory=dict)  # empty: the registry's tokenizer
    # A folder of `dcase9 export` whose query encoder is a registry weight: its name, and the sha256 of
    # the file the export compared it with (loading refuses another file under that name).
    query_encoder_weight: str | None = None
    query_encoder_sha256: str | None = None


def describe_checkpoint(checkpoint: Any, source: str) -> CheckpointDescription | None:
    """What the checkpoint says about itself; None for a checkpoint without a `dcase9` entry (made
    elsewhere, e.g. the official ones). A damaged entry is refused, naming `source`."""
    entry = checkpoint.get(ENTRY) if isinstance(checkpoint, Mapping) else None
    if entry is None:
        return None

    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"{source}: its `{ENTRY}` entry (what `dcase9 train` wrote about the model) is "
                               f"damaged: {what}")

    if not isinstance(entry, Mapping):
        raise refuse("not a mapping")
    version = entry.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise refuse(f"format {version!r} is not a version number")
    if version > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source}: written by a newer dcase9 (checkpoint format {version}; this version "
                              f"reads up to {CHECKPOINT_FORMAT}); update dcase9 to load it")
    system = entry.get("system")
    options = entry.get("system_options") or {}
    files = entry.get("tokenizer_files") or {}
    if system is not None and not isinstance(system, str):
        raise refuse("system is not a name")
    if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
        raise refuse("system_options is not a mapping of settings")
    if not isinstance(files, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise refuse("tokenizer_files is not a mapping of file names to text")
    unknown = sorted(set(files) - set(TOKENIZER_FOLDER_FILES))
    if unknown:
        raise refuse(f"tokenizer_files holds {', '.join(unknown)}; a tokenizer has "
                     f"{', '.join(TOKENIZER_FOLDER_FILES)}")
    missing = [name for name in REQUIRED_TOKENIZER_FILES if files and name not in files]
    if missing:
        raise refuse(f"tokenizer_files lacks {', '.join(missing)}")
    options = dict(options)
    if "clap" not in options:  # format 1: the net's options only; the CLAP is in the run's configuration
        config = entry.get("config")
        query_encoder = config.get("query_encoder") if isinstance(config, Mapping) else None
        architecture = query_encoder.get("architecture") if isinstance(query_encoder, Mapping) else None
        if isinstance(architecture, Mapping):
            try:
                options = inference_options(options, ClapArchitecture.model_validate(dict(architecture)))
            except ValueError as exc:
                raise refuse(f"config.query_encoder.architecture: {exc}") from None
    reference = entry.get("query_encoder") or {}
    if not isinstance(reference, Mapping) or not all(v is None or isinstance(v, str) for v in reference.values()):
        raise refuse("query_encoder is not a registry weight's name and sha256")
    return CheckpointDescription(source, system, options, dict(files), reference.get("weight"),
                                 reference.get("sha256"))
