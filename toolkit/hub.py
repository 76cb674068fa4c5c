"""Finding and fetching pretrained weights named in a registry file (see toolkit/weights.yaml).

Resolution order for a weight:
1. an explicit path (`--checkpoint PATH`, or `weights={"name": PATH}` in Python);
2. the local cache: `$DCASE9_HOME/weights/<name>/<filename>` (default `~/.cache/dcase9`), or the
   Hugging Face cache for Hub files;
3. a download from the entry's sources, unless offline (`--offline`, `DCASE9_OFFLINE=1` or
   `HF_HUB_OFFLINE=1`).
Downloads are written to a `.part` file (resumed when interrupted), checked (size, md5 from
Zenodo, sha256 when the registry knows it or the Hub reports it) and only then renamed into place.
When nothing works, the error names every place tried and what to do.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import urllib.request
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from dcase9.config import StrictModel, parse_model, read_yaml
from dcase9.errors import CheckpointError, ConfigError
from dcase9.files import describe_non_file, sha256_file, write_text_atomic

ZENODO_API = "https://zenodo.org/api/records"  # overridable with DCASE9_ZENODO_API (tests, mirrors)
CHUNK = 1 << 20


class HuggingFaceFile(StrictModel):
    repo: str
    repo_type: Literal["model", "space", "dataset"] = "model"
    path: str
    revision: str | None = None


class HuggingFaceSnapshot(StrictModel):
    repo: str
    repo_type: Literal["model", "space", "dataset"] = "model"
    files: list[str]
    optional_files: list[str] = []  # fetched when the repository has them; a cache without them is accepted
    subfolder: str | None = None  # the folder of the snapshot that is the weight
    revision: str | None = None


class ZenodoFile(StrictModel):
    record: int
    pattern: str = "*"  # which file of the record (fnmatch on its name)


class UrlFile(StrictModel):
    url: str
    md5: str | None = None


class Source(StrictModel):
    huggingface: HuggingFaceFile | None = None
    huggingface_snapshot: HuggingFaceSnapshot | None = None
    zenodo: ZenodoFile | None = None
    url: UrlFile | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Source":
        given = [k for k in ("huggingface", "huggingface_snapshot", "zenodo", "url") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a source names exactly one of huggingface, huggingface_snapshot, zenodo, url; got {given}")
        return self

    def describe(self) -> str:
        if self.huggingface:
            h = self.huggingface
            return f"https://huggingface.co/{'spaces/' if h.repo_type == 'space' else ''}{h.repo} ({h.path})"
        if self.huggingface_snapshot:
            s = self.huggingface_snapshot
            optional = f"; optional {', '.join(s.optional_files)}" if s.optional_files else ""
            return f"https://huggingface.co/{s.repo} ({', '.join(s.files)}{optional})"
        if self.zenodo:
            return f"https://zenodo.org/records/{self.zenodo.record} ({self.zenodo.pattern})"
        assert self.url is not None
        return self.url.url


class WeightEntry(StrictModel):
    description: str
    filename: str
    kind: Literal["file", "folder"] = "file"
    size_bytes: int | None = None  # approximate, for messages
    sha256: str | None = None
    sources: list[Source] = []


class Registry(StrictModel):
    entries: dict[str, WeightEntry]


@dataclass(frozen=True)
class ResolvedWeight:
    name: str
    path: Path
    sha256: str | None  # of the file (None for folders)
    origin: str  # "explicit path", "cache", or the source it was downloaded from


def load_registry(path: str | Path) -> dict[str, WeightEntry]:
    text = Path(path).read_text(encoding="utf-8")
    return parse_model({"entries": read_yaml(path)}, Registry, source=str(path), text=text).entries


def dcase9_home() -> Path:
    """dcase9's own cache folder: `$DCASE9_HOME`, else ~/.cache/dcase9. A `DCASE9_HOME` that exists but is
    not a folder is refused here, where every use of it starts (weights there could never be found)."""
    configured = os.environ.get("DCASE9_HOME")
    home = Path(configured or Path.home() / ".cache" / "dcase9")
    if configured and home.exists() and not home.is_dir():
        what = "a file" if home.is_file() else (describe_non_file(home) or "something else")
        raise ConfigError(f"DCASE9_HOME={configured} is {what}, not a folder: point it at a folder (dcase9 keeps "
                          "downloaded weights under DCASE9_HOME/weights), or unset it")
    return home


def cache_path(name: str, entry: WeightEntry) -> Path:
    return dcase9_home() / "weights" / name / entry.filename


def offline_requested(offline: bool = False) -> bool:
    """Downloads are forbidden: `offline`, or `DCASE9_OFFLINE` / `HF_HUB_OFFLINE` set (the one offline check)."""
    flags = (os.environ.get("DCASE9_OFFLINE", ""), os.environ.get("HF_HUB_OFFLINE", ""))
    return offline or any(v.strip().lower() in {"1", "true", "yes", "on"} for v in flags)


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered in `<file>.sha256` next to it while size and mtime are unchanged."""
    stat = path.stat()
    sidecar = path.with_name(path.name + ".sha256")
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    try:
        cached = json.loads(sidecar.read_text())
        if cached.get("stamp") == stamp:
            return str(cached["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    value = sha256_file(path)
    try:
        write_text_atomic(sidecar, json.dumps({"stamp": stamp, "sha256": value}))
    except OSError:  # a read-only location is fine: we just recompute next time
        pass
    return value


def _verify(path: Path, name: str, entry: WeightEntry) -> str | None:
    if entry.kind == "folder":
        return None
    value = file_sha256(path)
    if entry.sha256 and value != entry.sha256.lower():
        raise CheckpointError(f"{path}: sha256 {value} does not match the registry's {entry.sha256} for '{name}'. "
                              "The file is damaged or a different version; delete it and download again.")
    return value


def resolve_weight(name: str, entry: WeightEntry, *, explicit: str | Path | None = None, offline: bool = False,
                   download: bool = True, progress: bool = True) -> ResolvedWeight:
    """Local path of a weight, downloading it if allowed; see the module docstring for the order."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise CheckpointError(f"{path}: no such file (given for '{name}')")
        return ResolvedWeight(name, path, None if path.is_dir() else file_sha256(path), "explicit path")

    local = cache_path(name, entry)
    if local.exists():
        return ResolvedWeight(name, local, _verify(local, name, entry), "cache")
    for source in entry.sources:
        if source.huggingface or source.huggingface_snapshot:
            cached = _huggingface(source, local_only=True)
            if cached is not None:
                return ResolvedWeight(name, cached, _verify(cached, name, entry), "cache")

    tried: list[str] = []
    if download and not offline_requested(offline):
        for source in entry.sources:
            try:
                path = _download(source, name, entry, progress)
            except CheckpointError:
                raise
            except Exception as exc:  # network, HTTP, hub errors: try the next source
                tried.append(f"{source.describe()}: {type(exc).__name__}: {exc}")
                continue
            return ResolvedWeight(name, path, _verify(path, name, entry), source.describe())
    raise CheckpointError(_not_found_message(name, entry, local, tried, offline_requested(offline) or not download))


def _not_found_message(name: str, entry: WeightEntry, local: Path, tried: list[str], offline: bool) -> str:
    lines = [f"weight '{name}' ({entry.description}) is not available here."]
    if not entry.sources:
        lines.append("Nobody publishes it: train it (see README) and pass the file with --checkpoint PATH.")
    elif offline:
        lines.append("Offline mode is on, so nothing was downloaded. Download it elsewhere from:")
        lines += [f"  - {s.describe()}" for s in entry.sources]
    else:
        lines.append("Every source failed:")
        lines += [f"  - {t}" for t in tried]
    what = "DIR" if entry.kind == "folder" else "FILE"
    lines.append(f"Then pass it with --weight {name}={what}"
                 + (" (or --checkpoint FILE where it is the system's main checkpoint)" if entry.kind == "file" else "")
                 + f", or place it at {local}" + (" (a folder)" if entry.kind == "folder" else "") + ".")
    return "\n".join(lines)


def _huggingface(source: Source, local_only: bool) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        if source.huggingface is not None:
            h = source.huggingface
            return Path(hf_hub_download(h.repo, h.path, repo_type=h.repo_type, revision=h.revision,
                                        local_files_only=local_only))
        assert source.huggingface_snapshot is not None
        s = source.huggingface_snapshot
        paths = [Path(hf_hub_download(s.repo, f, repo_type=s.repo_type, revision=s.revision,
                                      local_files_only=local_only)) for f in s.files]
        for f in s.optional_files:
            try:
                hf_hub_download(s.repo, f, repo_type=s.repo_type, revision=s.revision, local_files_only=local_only)
            except (LocalEntryNotFoundError, EntryNotFoundError):
                pass  # not cached, or not in the repository: the required files are enough
    except LocalEntryNotFoundError:
        return None
    except Exception:
        if local_only:
            return None
        raise
    # The snapshot folder is where the first file sits, minus that file's own sub-path.
    root = paths[0].parents[len(Path(s.files[0]).parts) - 1]
    return root / s.subfolder if s.subfolder else root


def _download(source: Source, name: str, entry: WeightEntry, progress: bool) -> Path:
    if source.huggingface is not None or source.huggingface_snapshot is not None:
        path = _huggingface(source, local_only=False)
        assert path is not None
        return path
    target = cache_path(name, entry)
    if source.zenodo is not None:
        url, md5, size = _zenodo_file(source.zenodo)
    else:
        assert source.url is not None
        url, md5, size = source.url.url, source.url.md5, None
    fetch_url(url, target, md5=md5, size=size, progress=progress)
    return target


def _zenodo_file(spec: ZenodoFile) -> tuple[str, str | None, int | None]:
    api = os.environ.get("DCASE9_ZENODO_API", ZENODO_API).rstrip("/")
    with urllib.request.urlopen(f"{api}/{spec.record}", timeout=60) as response:
        record = json.load(response)
    files = record.get("files", [])
    matches = [f for f in files if fnmatch.fnmatchcase(f.get("key", ""), spec.pattern)]
    if len(matches) != 1:
        names = [f.get("key") for f in files]
        raise CheckpointError(f"Zenodo record {spec.record}: expected one file matching {spec.pattern!r}, found "
                              f"{len(matches)} among {names}")
    chosen = matches[0]
    checksum = str(chosen.get("checksum", ""))
    md5 = checksum.split(":", 1)[1] if checksum.startswith("md5:") else None
    link = chosen.get("links", {}).get("self") or f"https://zenodo.org/records/{spec.record}/files/{chosen['key']}?download=1"
    return link, md5, chosen.get("size")


def fetch_url(url: str, target: Path, *, md5: str | None = None, size: int | None = None, progress: bool = True) -> None:
    """Download `url` to `target` through `<target>.part`, resuming a previous partial download."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        if start and response.status != 206:  # the server ignored the range: start over
            start = 0
        total = size or (int(response.headers.get("Content-Length", 0)) + start) or None
        bar = _byte_progress(progress, total, target.name)
        with open(partial, "ab" if start else "wb") as out, bar or nullcontext():
            task = bar.add_task("download", total=total, completed=start) if bar is not None else None
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                if bar is not None and task is not None:
                    bar.update(task, advance=len(block))
    actual = partial.stat().st_size
    if size is not None and actual != size:
        raise CheckpointError(f"{url}: downloaded {actual} bytes, expected {size}; run the command again to resume")
    if md5 is not None:
        digest = hashlib.md5()
        with open(partial, "rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != md5:
            partial.unlink()
            raise CheckpointError(f"{url}: md5 mismatch after download ({digest.hexdigest()} != {md5}); the partial "
                                  "file was removed, run the command again")
    os.replace(partial, target)


def _byte_progress(enabled: bool, total: int | None, label: str) -> Any:
    if not enabled:
        return None
    from dcase9.progress import progress_bar

    return progress_bar(kind="bytes", label=label)
