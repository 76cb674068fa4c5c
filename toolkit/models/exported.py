"""The folder `dcase9 export` writes, and reading it as a checkpoint.

    DIR/model.safetensors   the tensors inference needs, under the official layout's names (`ss_model.*`,
                            and `query_encoder.model.*` in laion naming when the query encoder is not the
                            registry's stock CLAP); no optimizer state, no training loop state
    DIR/config.json         what the checkpoint said about itself (`dcase9.models.description`: system,
                            its options, the run's configuration), the dcase9 version, and where the
                            query encoder and the tokenizer come from (the registry, or this folder)
    DIR/tokenizer/          the tokenizer's files, when it is not the registry's roberta-base
    DIR/README.md           the model card
    DIR/checksums.sha256    the sha256 of every other file (`sha256sum -c checksums.sha256` checks them)

Reading never unpickles anything: config.json is JSON and the weights are safetensors. Every file
that checksums.sha256 lists is checked first (the sums are remembered under DCASE9_HOME, so a second
load costs nothing). `read_export` gives the mapping a checkpoint file gives (`{"state_dict": ...,
"dcase9": ...}`), so whatever takes a checkpoint takes an export: `dcase9.models.checkpoints.
read_checkpoint` hands folders here, and the systems' loaders name missing, extra or mis-shaped
tensors as they do for checkpoint files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import field_validator

from dcase9.config import StrictModel, parse_model
from dcase9.errors import CheckpointError
from dcase9.home import CHECKSUMS_FILE, file_sha256
from dcase9.models.clap.tokenizer import REQUIRED_TOKENIZER_FILES, TOKENIZER_FOLDER_FILES
from dcase9.models.description import CHECKPOINT_FORMAT, ENTRY

EXPORT_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
TOKENIZER_FOLDER = "tokenizer"
# Every entry an export folder holds (a folder holding anything else is not replaced by `dcase9 export`).
EXPORT_ENTRIES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, CHECKSUMS_FILE, TOKENIZER_FOLDER)
# Repository paths an upload of an export replaces (`dcase9.hub.push_folder(replaces=...)`).
EXPORT_PATTERNS = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE, CHECKSUMS_FILE, f"{TOKENIZER_FOLDER}/*")
QUERY_ENCODER_PREFIX = "query_encoder.model."  # the official layout's, in laion naming
_CHECKSUM_LINE = re.compile(r"^(?P<sha>[0-9a-f]{64}) [ *](?P<path>.+)$")


class QueryEncoderSource(StrictModel):
    """Where the query encoder of an export comes from."""

    weight: str | None = None  # the registry's weight it is (its tensors are not in model.safetensors)
    sha256: str | None = None  # of that weight's file when the export compared it; loading checks it


class TokenizerSource(StrictModel):
    """Where the tokenizer of an export comes from: the registry's roberta-base, or `tokenizer/`."""

    weight: str | None = None
    files: list[str] = []

    @field_validator("files")
    @classmethod
    def _tokenizer_files(cls, files: list[str]) -> list[str]:
        unknown = sorted(set(files) - set(TOKENIZER_FOLDER_FILES))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not tokenizer files ({', '.join(TOKENIZER_FOLDER_FILES)})")
        missing = [name for name in REQUIRED_TOKENIZER_FILES if files and name not in files]
        if missing:
            raise ValueError(f"a tokenizer needs {', '.join(missing)}")
        return files


class ExportConfig(StrictModel):
    """config.json of an export (`export_format` 1)."""

    export_format: int
    dcase9_version: str
    system: str
    description: dict[str, Any]  # the checkpoint's `dcase9` entry, without the tokenizer's files
    query_encoder: QueryEncoderSource
    tokenizer: TokenizerSource
    source: dict[str, Any] = {}  # the checkpoint exported: its file name, sha256 and training step


def is_export_folder(path: str | Path) -> bool:
    """Whether `path` is a folder of `dcase9 export` (config.json and checksums.sha256 in it)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / CHECKSUMS_FILE).is_file()


def checksums_text(sums: dict[str, str]) -> str:
    """checksums.sha256 listing `sums` (relative path -> sha256), in `sha256sum`'s format."""
    return "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))


def read_checksums(folder: Path) -> dict[str, str]:
    """The sums checksums.sha256 lists (relative path -> sha256), each path checked to stay in `folder`."""
    path = folder / CHECKSUMS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc})") from None
    sums: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        match = _CHECKSUM_LINE.match(line.rstrip("\r"))
        name = match["path"] if match else ""
        parts = PurePosixPath(name).parts
        if not match or not parts or PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name:
            raise CheckpointError(f"{path}, row {number}: expected '<sha256>  <file in this folder>', got {line!r}")
        sums[name] = match["sha"]
    return sums


def verify_export(folder: str | Path) -> dict[str, str]:
    """Check every file checksums.sha256 lists against its sum; the sums. Refuses a listing without
    config.json or model.safetensors, a missing file and a file whose bytes changed, naming it."""
    folder = Path(folder)
    sums = read_checksums(folder)
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if required not in sums:
            raise CheckpointError(f"{folder / CHECKSUMS_FILE}: does not list {required}; not a folder of "
                                  "`dcase9 export`, or a damaged one")
    for name, expected in sums.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (checksums.sha256 lists it); the folder is incomplete: download "
                                  "or export it again")
        actual = file_sha256(path)
        if actual != expected:
            raise CheckpointError(f"{path}: sha256 {actual} is not the {expected} that checksums.sha256 lists; the "
                                  "file is damaged or was changed: download or export the folder again")
    return sums


def read_export_config(folder: str | Path) -> ExportConfig:
    """config.json of an export, checked (not the other files: see `read_export`)."""
    path = Path(folder) / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text, parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc})") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    version = data.get("export_format")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: not the config.json of `dcase9 export` (no export_format version)")
    if version > EXPORT_FORMAT:
        raise CheckpointError(f"{path}: written by a newer dcase9 (export format {version}; this version reads up "
                              f"to {EXPORT_FORMAT}); update dcase9 to load it")
    try:
        return parse_model(data, ExportConfig, source=str(path))
    except Exception as exc:  # ConfigError listing every bad key: the file is the checkpoint, say so
        raise CheckpointError(str(exc)) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_export(folder: str | Path) -> dict[str, Any]:
    """A folder of `dcase9 export` as the mapping a checkpoint file gives: `state_dict` (its tensors)
    and `dcase9` (what it says about itself, with the tokenizer's files when it carries them)."""
    folder = Path(folder)
    if not is_export_folder(folder):
        lacking = [name for name in (CONFIG_FILE, CHECKSUMS_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
        raise CheckpointError(f"{folder} is a folder, not a checkpoint file; a folder of `dcase9 export` holds "
                              f"{CONFIG_FILE}, {WEIGHTS_FILE} and {CHECKSUMS_FILE} (this one lacks "
                              f"{', '.join(lacking) or 'nothing'})")
    sums = verify_export(folder)
    config = read_export_config(folder)
    tokenizer_files = {}
    for name in config.tokenizer.files:
        relative = f"{TOKENIZER_FOLDER}/{name}"
        if relative not in sums:
            raise CheckpointError(f"{folder / CHECKSUMS_FILE}: does not list {relative}, which config.json names")
        tokenizer_files[name] = (folder / relative).read_text(encoding="utf-8")
    entry = dict(config.description)
    version = entry.get("format", 1)
    if isinstance(version, int) and version > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{folder / CONFIG_FILE}: describes a checkpoint of a newer dcase9 (format {version}); "
                              "update dcase9 to load it")
    entry["system"] = config.system
    entry["tokenizer_files"] = tokenizer_files
    if config.query_encoder.weight is not None:
        entry["query_encoder"] = config.query_encoder.model_dump()
    return {"state_dict": read_weights(folder / WEIGHTS_FILE), ENTRY: entry}


def read_weights(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def referenced_query_encoder(path: str | Path) -> str | None:
    """The registry weight an export's query encoder is (its tensors are not in the folder); None for a
    checkpoint file, or an export that carries its own."""
    if not is_export_folder(path):
        return None
    return read_export_config(path).query_encoder.weight
