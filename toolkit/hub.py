"""Finding, fetching and verifying pretrained weights named in a registry file (see toolkit/weights.yaml),
and folders of `dcase9 export` on the Hugging Face Hub.

Resolution order for a weight:
1. an explicit path (`--checkpoint PATH`, or `weights={"name": PATH}` in Python), or a folder of
   `dcase9 export` on the Hub (`hf://owner/name[@revision]`);
2. the local cache: `$DCASE9_HOME/weights/<name>/<filename>` (default `~/.cache/dcase9`), or the
   Hugging Face cache for Hub files (at the registry's pinned revision; a cached copy of another
   revision is taken only when the registry knows every file's sha256);
3. a download from the entry's sources, unless offline (`--offline`, `DCASE9_OFFLINE=1` or
   `HF_HUB_OFFLINE=1`).

What is checked (see `dcase9.home`): a Zenodo download against the md5 Zenodo's API reports (a plain
URL against the registry's md5), in a `.part` file resumed when interrupted and renamed into place
only then; a Hub download against the sha256 the Hub reports for files stored with LFS (the git
object id for the others) at the revision asked for, and so is a file found in the Hugging Face
cache that dcase9 has no record of (cached by another tool), when the Hub answers; every weight
against the registry's sha256 where it states one; and every downloaded file, at every later use,
against the sha256 recorded at its first download (`DCASE9_HOME/verified/`). A file that failed a
check is remembered there too: the copy the Hugging Face cache keeps is refused until it is removed.
Nothing can be known of a file that no public source states a sum for and that was cached offline
by another tool: it is recorded at its first use. A weight given by path is the user's: it is
hashed (remembered under DCASE9_HOME) to identify runs, not checked. When nothing works, the error
names every place tried and what to do.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import urllib.request
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator, model_validator

from dcase9.config import StrictModel, parse_model, read_yaml
from dcase9.errors import CheckpointError, ConfigError
from dcase9.home import (dcase9_home, file_sha256, folder_identity, git_blob_sha1, has_record, reject_download,
                         verify_download)

__all__ = ["HUB_SCHEME", "HubReference", "PushPlan", "ResolvedWeight", "Source", "WeightEntry", "cache_path",
           "checkpoint_location", "dcase9_home", "fetch_hub_folder", "fetch_url", "file_sha256", "load_registry",
           "local_checkpoint", "offline_requested", "push_folder", "resolve_checkpoint", "resolve_weight"]

ZENODO_API = "https://zenodo.org/api/records"  # overridable with DCASE9_ZENODO_API (tests, mirrors)
CHUNK = 1 << 20
HUB_SCHEME = "hf://"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HUB_ADVICE = ("The download is damaged, or the repository changed: remove it from the Hugging Face cache "
               "(huggingface-cli delete-cache) and run the command again.")
_CACHE_ADVICE = "The file is damaged or a different version; delete it and download again."


def _sha256_field(value: str | None) -> str | None:
    if value is not None and not _SHA256.match(value.lower()):
        raise ValueError(f"{value!r} is not a sha256 (64 hexadecimal digits)")
    return value.lower() if value is not None else None


class HuggingFaceFile(StrictModel):
    repo: str
    repo_type: Literal["model", "space", "dataset"] = "model"
    path: str
    revision: str | None = None  # a commit: the file is that version, whatever the repository becomes


class HuggingFaceSnapshot(StrictModel):
    repo: str
    repo_type: Literal["model", "space", "dataset"] = "model"
    files: list[str]
    optional_files: list[str] = []  # fetched when the repository has them; a cache without them is accepted
    subfolder: str | None = None  # the folder of the snapshot that is the weight
    revision: str | None = None
    sha256: dict[str, str] = {}  # repository path -> sha256, where a public source states it

    @field_validator("sha256")
    @classmethod
    def _sums(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: _sha256_field(digest) or "" for name, digest in value.items()}

    @model_validator(mode="after")
    def _known_files(self) -> HuggingFaceSnapshot:
        unknown = sorted(set(self.sha256) - set(self.files) - set(self.optional_files))
        if unknown:
            raise ValueError(f"sha256 given for files the snapshot does not fetch: {', '.join(unknown)}")
        return self


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
    def _exactly_one(self) -> Source:
        given = [k for k in ("huggingface", "huggingface_snapshot", "zenodo", "url") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a source names exactly one of huggingface, huggingface_snapshot, zenodo, url; got {given}")
        return self

    def describe(self) -> str:
        if self.huggingface:
            h = self.huggingface
            return (f"https://huggingface.co/{'spaces/' if h.repo_type == 'space' else ''}{h.repo} ({h.path}"
                    + (f" at {h.revision[:12]}" if h.revision else "") + ")")
        if self.huggingface_snapshot:
            s = self.huggingface_snapshot
            optional = f"; optional {', '.join(s.optional_files)}" if s.optional_files else ""
            at = f" at {s.revision[:12]}" if s.revision else ""
            return f"https://huggingface.co/{s.repo} ({', '.join(s.files)}{optional}{at})"
        if self.zenodo:
            return f"https://zenodo.org/records/{self.zenodo.record} ({self.zenodo.pattern})"
        assert self.url is not None
        return self.url.url


class WeightEntry(StrictModel):
    description: str
    filename: str
    kind: Literal["file", "folder"] = "file"
    size_bytes: int | None = None  # for messages (exact where the source states it)
    sha256: str | None = None  # of the file, where a public source states it
    sources: list[Source] = []

    _sum = field_validator("sha256")(lambda cls, value: _sha256_field(value))

    @model_validator(mode="after")
    def _checksum(self) -> WeightEntry:
        if self.sha256 is not None and self.kind == "folder":
            raise ValueError("a folder weight has no sha256 of its own: give its files' sums in its snapshot source")
        return self


class Registry(StrictModel):
    entries: dict[str, WeightEntry]


@dataclass(frozen=True)
class ResolvedWeight:
    name: str
    path: Path
    sha256: str | None  # of the file; of its checksums.sha256 for a folder of `dcase9 export`; None for other folders
    origin: str  # "explicit path", "cache", "hf://owner/name@commit", or the source it was downloaded from


def load_registry(path: str | Path) -> dict[str, WeightEntry]:
    text = Path(path).read_text(encoding="utf-8")
    return parse_model({"entries": read_yaml(path)}, Registry, source=str(path), text=text).entries


def cache_path(name: str, entry: WeightEntry) -> Path:
    return dcase9_home() / "weights" / name / entry.filename


def offline_requested(offline: bool = False) -> bool:
    """Downloads are forbidden: `offline`, or `DCASE9_OFFLINE` / `HF_HUB_OFFLINE` set (the one offline check)."""
    flags = (os.environ.get("DCASE9_OFFLINE", ""), os.environ.get("HF_HUB_OFFLINE", ""))
    return offline or any(v.strip().lower() in {"1", "true", "yes", "on"} for v in flags)


# ------------------------------------------------------------------------------------------------
# Checkpoints given by the user: a path, or hf://owner/name[@revision]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class HubReference:
    """`hf://owner/name[@revision]`: a folder written by `dcase9 export`, in a Hugging Face model repository."""

    repo: str
    revision: str | None = None

    def __str__(self) -> str:
        return HUB_SCHEME + self.repo + (f"@{self.revision}" if self.revision else "")

    @classmethod
    def parse(cls, text: str) -> HubReference:
        body = text[len(HUB_SCHEME):] if text.startswith(HUB_SCHEME) else text
        repo, at, revision = body.partition("@")
        if not _REPO_ID.match(repo) or ".." in repo or (at and not revision.strip()):
            raise ConfigError(f"{text!r} is not a Hugging Face model: write hf://owner/name or "
                              "hf://owner/name@revision (a branch, tag or commit)")
        return cls(repo, revision.strip() or None)


def checkpoint_location(value: str | Path | HubReference) -> Path | HubReference:
    """A checkpoint as given (`--checkpoint`, `--weight NAME=...`, `checkpoint=`): `hf://owner/name[@rev]`
    names a folder of `dcase9 export` on the Hub, anything else a local file or folder."""
    if isinstance(value, HubReference):
        return value
    if isinstance(value, str) and value.startswith(HUB_SCHEME):
        return HubReference.parse(value)
    return Path(value).expanduser()


def local_checkpoint(value: str | Path | HubReference | None) -> Path | None:
    """The local path of a checkpoint as given; None for one on the Hub (nothing local to protect) or none."""
    if value is None:
        return None
    location = checkpoint_location(value)
    return location if isinstance(location, Path) else None


def resolve_checkpoint(value: str | Path | HubReference, *, offline: bool = False) -> Path:
    """The local file or folder of a checkpoint as given: a Hub folder is fetched (or found in the cache)."""
    location = checkpoint_location(value)
    if isinstance(location, HubReference):
        return fetch_hub_folder(location, offline=offline_requested(offline))[0]
    if not location.exists():
        raise CheckpointError(f"{location}: no such file or folder")
    return location


def fetch_hub_folder(reference: HubReference, *, offline: bool = False) -> tuple[Path, str]:
    """The local copy of a Hub model repository (a folder of `dcase9 export`) and its commit, through the
    Hugging Face cache: downloaded unless offline, each file checked against what the Hub reports for
    it and against the sha256 recorded at its first download (`dcase9.home`)."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    immutable = reference.revision is not None and re.fullmatch(r"[0-9a-f]{40}", reference.revision) is not None
    folder: Path | None = None
    if offline or immutable:  # a commit never changes: the cached copy is that commit
        try:
            folder = Path(huggingface_hub.snapshot_download(reference.repo, revision=reference.revision,
                                                            local_files_only=True))
        except LocalEntryNotFoundError:
            if offline:
                raise CheckpointError(
                    f"{reference} is not in the Hugging Face cache and offline mode is on, so nothing was "
                    f"downloaded. Run the command once online, or download the repository elsewhere "
                    f"(https://huggingface.co/{reference.repo}) and pass its folder with --checkpoint DIR.") from None
    if folder is None:
        try:
            folder = Path(huggingface_hub.snapshot_download(reference.repo, revision=reference.revision))
        except Exception as exc:  # not found, gated, no network: the Hub's own words, first line
            raise CheckpointError(f"{reference}: could not be downloaded from https://huggingface.co/"
                                  f"{reference.repo} ({type(exc).__name__}: {_first_line(exc)}). Check the name "
                                  "and revision, or pass a local folder with --checkpoint DIR.") from None
    commit = folder.name  # the cache keeps a snapshot per commit, under the commit's id
    files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
    name = f"hf:{reference.repo}"
    first_use = not all(has_record(name, f"{commit}/{repo_file}") for repo_file in files)
    reported = _hub_reported(reference.repo, "model", commit, list(files)) if first_use and not offline else {}
    for repo_file, path in files.items():
        key = f"{commit}/{repo_file}"
        _check_reported(path, reported.get(repo_file), name=name, key=key)
        verify_download(path, name=name, key=key, expected=None, stated_by="the Hugging Face Hub",
                        mismatch_advice=_HUB_ADVICE)
    return folder, commit


# ------------------------------------------------------------------------------------------------
# Registry weights


def resolve_weight(name: str, entry: WeightEntry, *, explicit: str | Path | HubReference | None = None,
                   offline: bool = False, download: bool = True, progress: bool = True) -> ResolvedWeight:
    """Local path of a weight, downloading it if allowed; see the module docstring for the order."""
    if explicit is not None:
        location = checkpoint_location(explicit)
        if isinstance(location, HubReference):
            folder, commit = fetch_hub_folder(location, offline=offline_requested(offline) or not download)
            return ResolvedWeight(name, folder, folder_identity(folder), str(HubReference(location.repo, commit)))
        if not location.exists():
            raise CheckpointError(f"{location}: no such file (given for '{name}')")
        sha = folder_identity(location) if location.is_dir() else file_sha256(location)
        return ResolvedWeight(name, location, sha, "explicit path")

    local = cache_path(name, entry)
    if local.exists():
        sha = None if entry.kind == "folder" else verify_download(
            local, name=name, key=entry.filename, expected=entry.sha256, stated_by="the registry",
            mismatch_advice=_CACHE_ADVICE)
        return ResolvedWeight(name, local, sha, "cache")
    may_ask = download and not offline_requested(offline)
    for source in entry.sources:
        spec = source.huggingface or source.huggingface_snapshot
        if spec is not None:
            cached = _huggingface(source, entry, local_only=True)
            if cached is not None:
                path, files, revision = cached
                # Cached by another tool, or before dcase9 kept records: checked with the Hub once, when it answers.
                first_use = not all(has_record(name, repo_file) for repo_file in files)
                reported = _hub_reported(spec.repo, spec.repo_type, revision, list(files)) \
                    if first_use and may_ask else None
                return ResolvedWeight(name, path, _verify_hub(name, entry, source, files, reported), "cache")

    tried: list[str] = []
    if may_ask:
        for source in entry.sources:
            try:
                path, sha = _download(source, name, entry, progress)
            except CheckpointError:
                raise
            except Exception as exc:  # network, HTTP, hub errors: try the next source
                tried.append(f"{source.describe()}: {type(exc).__name__}: {exc}")
                continue
            return ResolvedWeight(name, path, sha, source.describe())
    raise CheckpointError(_not_found_message(name, entry, local, tried, offline_requested(offline) or not download))


def _not_found_message(name: str, entry: WeightEntry, local: Path, tried: list[str], offline: bool) -> str:
    lines = [f"weight '{name}' ({entry.description}) is not available here."]
    if not entry.sources:
        lines.append("Nobody publishes it: train it (see README) and pass the file with --checkpoint PATH "
                     "(or a folder of `dcase9 export`: DIR or hf://owner/name).")
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


def _known_sums(entry: WeightEntry, source: Source) -> dict[str, str]:
    """Repository path -> the sha256 the registry states for it."""
    if source.huggingface is not None:
        return {source.huggingface.path: entry.sha256} if entry.sha256 else {}
    assert source.huggingface_snapshot is not None
    return dict(source.huggingface_snapshot.sha256)


def _huggingface(source: Source, entry: WeightEntry,
                 local_only: bool) -> tuple[Path, dict[str, Path], str | None] | None:
    """(the weight's local path, repository path -> local file, the revision asked for) from the Hub or,
    with `local_only`, its cache (None when not there). A cache holding another revision than the pinned
    one serves only when the registry knows the sha256 of every required file (they are checked)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    spec = source.huggingface or source.huggingface_snapshot
    assert spec is not None
    required = [spec.path] if isinstance(spec, HuggingFaceFile) else list(spec.files)
    optional = [] if isinstance(spec, HuggingFaceFile) else list(spec.optional_files)
    known = _known_sums(entry, source)
    revisions: list[str | None] = [spec.revision]
    if local_only and spec.revision is not None and all(known.get(f) for f in required):
        revisions.append(None)  # e.g. cached by an earlier dcase9 at the repository's main
    for revision in revisions:
        try:
            files = {f: Path(hf_hub_download(spec.repo, f, repo_type=spec.repo_type, revision=revision,
                                             local_files_only=local_only)) for f in required}
        except LocalEntryNotFoundError:
            continue
        except Exception:
            if local_only:
                continue
            raise
        for f in optional:
            try:
                files[f] = Path(hf_hub_download(spec.repo, f, repo_type=spec.repo_type, revision=revision,
                                                local_files_only=local_only))
            except (LocalEntryNotFoundError, EntryNotFoundError):
                pass  # not cached, or not in the repository: the required files are enough
        if isinstance(spec, HuggingFaceFile):
            return files[spec.path], files, revision
        # The snapshot folder is where the first file sits, minus that file's own sub-path.
        root = files[required[0]].parents[len(Path(required[0]).parts) - 1]
        return (root / spec.subfolder if spec.subfolder else root), files, revision
    return None


def _lfs_sha256(lfs: Any) -> str | None:
    value = getattr(lfs, "sha256", None) if lfs is not None else None
    if value is None and isinstance(lfs, dict):
        value = lfs.get("sha256") or lfs.get("oid")
    return str(value).lower() if value else None


def _hub_reported(repo: str, repo_type: str, revision: str | None,
                  files: list[str]) -> dict[str, tuple[str, str]]:
    """Repository path -> ("sha256", value) for files stored with LFS, ("git-sha1", object id) for the
    others, as the Hub reports them at `revision`. Empty when the Hub does not answer: the registry's
    sums and the first-download records still apply."""
    from huggingface_hub import HfApi

    try:
        infos = HfApi().get_paths_info(repo, files, revision=revision, repo_type=repo_type)
    except Exception:
        return {}
    reported: dict[str, tuple[str, str]] = {}
    for info in infos:
        sha = _lfs_sha256(getattr(info, "lfs", None))
        blob = getattr(info, "blob_id", None)
        if sha:
            reported[info.path] = ("sha256", sha)
        elif blob:
            reported[info.path] = ("git-sha1", str(blob))
    return reported


def _check_reported(path: Path, reported: tuple[str, str] | None, *, name: str, key: str) -> None:
    """Refuse a file whose sum is not the one the Hub reports, and remember it (a copy stays in the cache)."""
    if reported is None:
        return
    kind, value = reported
    actual = file_sha256(path) if kind == "sha256" else git_blob_sha1(path)
    if actual != value:
        what = "sha256 (LFS)" if kind == "sha256" else "git object id"
        reject_download(name, key, file_sha256(path), f"the Hugging Face Hub reports {what} {value}")
        raise CheckpointError(f"{path}: its {what} {actual} is not the {value} the Hugging Face Hub reports for "
                              f"it. {_HUB_ADVICE}")


def _verify_hub(name: str, entry: WeightEntry, source: Source, files: dict[str, Path],
                reported: dict[str, tuple[str, str]] | None) -> str | None:
    """Check each file of a Hub weight (see the module docstring); the sha256 of a file weight."""
    known = _known_sums(entry, source)
    sums = {}
    for repo_file, path in files.items():
        _check_reported(path, (reported or {}).get(repo_file), name=name, key=repo_file)
        sums[repo_file] = verify_download(path, name=name, key=repo_file, expected=known.get(repo_file),
                                          stated_by="the registry", mismatch_advice=_HUB_ADVICE)
    return sums[source.huggingface.path] if source.huggingface is not None else None


def _download(source: Source, name: str, entry: WeightEntry, progress: bool) -> tuple[Path, str | None]:
    if source.huggingface is not None or source.huggingface_snapshot is not None:
        fetched = _huggingface(source, entry, local_only=False)
        assert fetched is not None
        path, files, revision = fetched
        spec = source.huggingface or source.huggingface_snapshot
        assert spec is not None
        reported = _hub_reported(spec.repo, spec.repo_type, revision, list(files))
        return path, _verify_hub(name, entry, source, files, reported)
    target = cache_path(name, entry)
    if source.zenodo is not None:
        url, md5, size = _zenodo_file(source.zenodo)
    else:
        assert source.url is not None
        url, md5, size = source.url.url, source.url.md5, None
    fetch_url(url, target, md5=md5, size=size, progress=progress)
    return target, verify_download(target, name=name, key=entry.filename, expected=entry.sha256,
                                   stated_by="the registry", mismatch_advice=_CACHE_ADVICE)


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
        digest = hashlib.md5(usedforsecurity=False)
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


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ------------------------------------------------------------------------------------------------
# Publishing a folder on the Hub


@dataclass(frozen=True)
class PushPlan:
    """What `push_folder` uploads (or, for a dry run, would upload): repository, files and their sizes."""

    repo: str
    files: dict[str, int]  # path in the repository -> bytes
    uploaded: bool = False
    commit_url: str | None = None


def push_folder(folder: str | Path, repo: str, *, dry_run: bool = False, private: bool = False,
                replaces: tuple[str, ...] = (), commit_message: str = "Upload with dcase9 export") -> PushPlan:
    """Upload every file of `folder` to the Hugging Face model repository `repo` (created if it does not
    exist), with the token huggingface_hub finds (`HF_TOKEN`, or `huggingface-cli login`); `dry_run`
    uploads nothing and says what would be. Files of the repository matching `replaces` that the folder
    no longer has are deleted (what an earlier upload of the same kind of folder left); any other file
    there is left alone. The token never appears in a message."""
    folder = Path(folder)
    HubReference.parse(repo)  # owner/name, refused before anything else
    files = {path.relative_to(folder).as_posix(): path.stat().st_size
             for path in sorted(folder.rglob("*")) if path.is_file()}
    if dry_run:
        return PushPlan(repo, files)
    import huggingface_hub

    api = huggingface_hub.HfApi()
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo, folder_path=str(folder), repo_type="model",
                                 commit_message=commit_message, delete_patterns=list(replaces) or None)
    except Exception as exc:  # no token, no write access, no network: said without the token
        raise CheckpointError(_redact_token(
            f"could not upload {folder} to https://huggingface.co/{repo} ({type(exc).__name__}: {_first_line(exc)}). "
            "Log in with `huggingface-cli login` (or set HF_TOKEN to a token with write access) and check the "
            "repository's name.")) from None
    return PushPlan(repo, files, uploaded=True, commit_url=str(getattr(info, "commit_url", "") or "") or None)


def _redact_token(text: str) -> str:
    """`text` without the Hugging Face token, wherever huggingface_hub would find one."""
    tokens = {os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")}
    try:
        from huggingface_hub import get_token

        tokens.add(get_token())
    except Exception:  # no token stored: nothing more to hide
        pass
    for token in tokens:
        if token and len(token) >= 4:
            text = text.replace(token, "***")
    return text
