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

Before anything is read or downloaded, `weight_plan` says what getting a weight takes (nothing: given
or cached; a download, from which hosts; or it cannot be had) and `Reachability` whether those hosts
accept a connection, within seconds: a command names every weight it lacks in one `MissingWeights`,
and an unreachable network is said at once, never after huggingface_hub's retries (five per file, up
to 8 s apart). `MissingWeights.render` words the error with the caller's own flags or keywords.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator, model_validator

from dcase9.config import StrictModel, parse_model, read_yaml
from dcase9.errors import CheckpointError, ConfigError
from dcase9.home import (dcase9_home, file_sha256, folder_identity, git_blob_sha1, has_record, reject_download,
                         verify_download)

__all__ = ["HUB_SCHEME", "PYTHON_ARGUMENTS", "HubReference", "MissingWeights", "PushPlan", "Reachability",
           "ResolvedWeight", "Source", "Unavailable", "WeightEntry", "WeightPlan", "cache_path", "checkpoint_location",
           "dcase9_home", "fetch_hub_folder", "fetch_url", "file_sha256", "hub_endpoint", "load_registry",
           "local_checkpoint", "offline_reason", "offline_requested", "push_folder", "resolve_checkpoint",
           "resolve_weight", "source_url", "weight_plan"]

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


OFFLINE_VARIABLES = ("DCASE9_OFFLINE", "HF_HUB_OFFLINE")


def offline_reason(offline: bool = False) -> str | None:
    """Why downloads are forbidden: "argument" (`offline=True`, a command's --offline), the environment
    variable that says so (`DCASE9_OFFLINE`, `HF_HUB_OFFLINE`), or None when they are allowed."""
    if offline:
        return "argument"
    for variable in OFFLINE_VARIABLES:
        if os.environ.get(variable, "").strip().lower() in {"1", "true", "yes", "on"}:
            return variable
    return None


def offline_requested(offline: bool = False) -> bool:
    """Downloads are forbidden: `offline`, or `DCASE9_OFFLINE` / `HF_HUB_OFFLINE` set (the one offline check)."""
    return offline_reason(offline) is not None


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
        return fetch_hub_folder(location, offline=offline_requested(offline), name=str(location))[0]
    if not location.exists():
        raise CheckpointError(f"{location}: no such file or folder")
    return location


def fetch_hub_folder(reference: HubReference, *, offline: bool = False, name: str | None = None,
                     reach: Reachability | None = None) -> tuple[Path, str]:
    """The local copy of a Hub model repository (a folder of `dcase9 export`) and its commit, through the
    Hugging Face cache: downloaded unless offline, each file checked against what the Hub reports for
    it and against the sha256 recorded at its first download (`dcase9.home`). When the Hub cannot be
    reached the cached copy serves; without one, `MissingWeights` says so at once (`name`: the weight
    it was given for)."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def cached() -> Path | None:
        try:
            return Path(huggingface_hub.snapshot_download(reference.repo, revision=reference.revision,
                                                          local_files_only=True))
        except LocalEntryNotFoundError:
            return None

    def missing(why: Literal["offline", "unreachable"], detail: str = "") -> MissingWeights:
        return MissingWeights([Unavailable(name or str(reference), None, why, str(reference), detail)],
                              offline=(offline_reason() or "argument") if why == "offline" else None)

    # A commit never changes: its cached copy is that commit. Offline, the cache is all there is.
    folder = cached() if offline or _immutable(reference) else None
    unreachable = None
    if folder is None:
        if offline:
            raise missing("offline")
        unreachable = (reach or Reachability()).problem(hub_endpoint())
        if unreachable:
            folder = cached()  # the Hub cannot be reached: the copy cached earlier serves
            if folder is None:
                raise missing("unreachable", unreachable)
    if folder is None:
        try:
            folder = Path(huggingface_hub.snapshot_download(reference.repo, revision=reference.revision))
        except Exception as exc:  # not found, gated: the Hub's own words, first line
            raise CheckpointError(f"{reference}: could not be downloaded from https://huggingface.co/"
                                  f"{reference.repo} ({type(exc).__name__}: {_first_line(exc)}). Check the name "
                                  "and revision, or give a local copy of the folder instead.") from None
    commit = folder.name  # the cache keeps a snapshot per commit, under the commit's id
    files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
    records = f"hf:{reference.repo}"  # the name its files' sums are recorded under (`dcase9.home`)
    first_use = not all(has_record(records, f"{commit}/{repo_file}") for repo_file in files)
    reported = _hub_reported(reference.repo, "model", commit, list(files)) \
        if first_use and not offline and not unreachable else {}
    for repo_file, path in files.items():
        key = f"{commit}/{repo_file}"
        _check_reported(path, reported.get(repo_file), name=records, key=key)
        verify_download(path, name=records, key=key, expected=None, stated_by="the Hugging Face Hub",
                        mismatch_advice=_HUB_ADVICE)
    return folder, commit


# ------------------------------------------------------------------------------------------------
# Before anything is read or downloaded: what a weight takes, whether its hosts answer, what is missing

REACH_TIMEOUT = 4.0  # seconds a host (or proxy) has to accept a connection, its name lookup included

# The Python API's words for what a caller gives (`MissingWeights.render`): a role -> how it is written, with
# {name} (the weight) and {what} (FILE or DIR). A command renders the error with its own flags instead.
PYTHON_ARGUMENTS: dict[str, str] = {"weights": "weights={{{name!r}: {what}}}", "checkpoint": "checkpoint={what}",
                                    "init": "init={what}", "offline": "offline=True"}


def hub_endpoint() -> str:
    """Where huggingface_hub downloads from (`HF_ENDPOINT`, default https://huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def source_url(source: Source) -> str:
    """The address a download from `source` starts at: its host must answer."""
    if source.huggingface is not None or source.huggingface_snapshot is not None:
        return hub_endpoint()
    if source.zenodo is not None:
        return os.environ.get("DCASE9_ZENODO_API", ZENODO_API)
    assert source.url is not None  # a Source names exactly one kind (validated)
    return source.url.url


def _connection_target(url: str) -> tuple[str, int, str]:
    """(host, port, words for messages) of the connection a request for `url` opens: to its host, or to the
    proxy that serves it (`HTTPS_PROXY`, `NO_PROXY`, ... as urllib and huggingface_hub read them)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number: the connection below says it fails
        port = 0
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        through = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if through.hostname:
            proxy_port = through.port or 80
            return through.hostname, proxy_port, f"{host} through the proxy {through.hostname}:{proxy_port}"
    return host, port, f"{host}:{port}"


def _connect(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to (host, port) opens within `timeout` seconds; else why not."""
    if not host or not port:
        return "no host and port to connect to"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


class Reachability:
    """Whether the hosts downloads start at accept a connection: each asked once (however many weights come
    from it), all at once, each within `timeout` seconds, a name lookup that hangs included. It costs one
    connection per host, and an unreachable network is said at once instead of after huggingface_hub's
    retries (five per file, up to 8 s apart) and a download's time-outs."""

    def __init__(self, timeout: float = REACH_TIMEOUT) -> None:
        self.timeout = timeout
        self._answers: dict[tuple[str, int], str | None] = {}

    def problems(self, urls: Iterable[str]) -> dict[str, str | None]:
        """url -> None when its host (or proxy) accepts a connection, else why not ("host:port: reason")."""
        targets = {url: _connection_target(url) for url in urls}
        new = {(host, port): words for host, port, words in targets.values() if (host, port) not in self._answers}
        answers: dict[tuple[str, int], str | None] = {}

        def ask(key: tuple[str, int]) -> None:
            answers[key] = _connect(*key, self.timeout)

        threads = [threading.Thread(target=ask, args=(key,), daemon=True) for key in new]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + self.timeout
        for thread in threads:  # daemon threads: a lookup that never returns is left behind, not waited for
            thread.join(max(0.0, deadline - time.monotonic()))
        for key, words in new.items():
            if key not in answers:
                self._answers[key] = f"{words}: no answer within {self.timeout:g} s"
            else:
                answer = answers[key]
                self._answers[key] = None if answer is None else f"{words}: {answer}"
        return {url: self._answers[(host, port)] for url, (host, port, _) in targets.items()}

    def problem(self, url: str) -> str | None:
        return self.problems([url])[url]


@dataclass(frozen=True)
class Unavailable:
    """A weight that cannot be had: its registry name (or the hf:// reference of a folder given for none),
    its entry (None then), why, the path or hf:// reference given for it (`given`) and `detail`:

    "unpublished": no source publishes it (train it); "offline": downloads are forbidden and it is not
    cached; "unreachable": no host of its sources accepts a connection (`detail`: why); "not-found": the
    path given does not exist; "failed": every download failed (`detail`: each, a line).
    """

    name: str
    entry: WeightEntry | None
    why: Literal["unpublished", "offline", "unreachable", "not-found", "failed"]
    given: str = ""
    detail: str = ""


class MissingWeights(CheckpointError):
    """The weights a call needs and cannot have, named together: for each where it comes from and how to
    give a local copy. `roles` maps a weight to the argument of the call that gives it besides `weights`
    (a system's main weights: "checkpoint"; ATS's CLAP: "checkpoint"; training's init: "init");
    `offline`: why downloads were forbidden (`offline_reason`). `str()` words it for the Python API;
    `render(flags)` with the flags of a command (role -> how the command writes it, see
    `PYTHON_ARGUMENTS`), so that a hint never names a flag the command does not have."""

    def __init__(self, missing: Sequence[Unavailable], *, offline: str | None = None,
                 roles: Mapping[str, str] | None = None) -> None:
        self.missing = list(missing)
        self.offline = offline
        self.roles = dict(roles or {})
        super().__init__(self.render(PYTHON_ARGUMENTS))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (between processes) with its keywords
        return _rebuild_missing_weights, (self.missing, self.offline, self.roles)

    def with_roles(self, roles: Mapping[str, str]) -> MissingWeights:
        """The same weights, with the arguments that give them (`roles`) of the call that needed them."""
        return MissingWeights(self.missing, offline=self.offline, roles={**roles, **self.roles})

    def render(self, flags: Mapping[str, str]) -> str:
        whys = {item.why for item in self.missing}
        single = len(self.missing) == 1
        them = "it" if single else "them"
        head = f"weight '{self.missing[0].name}' is" if single else f"{len(self.missing)} weights are"
        reasons = []
        if "offline" in whys:
            reasons.append(f"offline mode is on{self._offline_words(flags)}, so nothing was downloaded")
        if "unreachable" in whys:
            reasons.append("the network cannot be reached, so nothing was downloaded")
        lines = [f"{head} not available here" + "".join(f"; {reason}" for reason in reasons) + ":"]
        for item in self.missing:
            lines += self._describe(item, flags)
        if "offline" in whys:
            if self.offline in OFFLINE_VARIABLES:
                lines.append(f"Unset {self.offline} to let dcase9 download {them}.")
            elif "offline" in flags:
                lines.append(f"Without {flags['offline']}, dcase9 downloads {them}.")
        if "unreachable" in whys:
            lines.append(f"Connect to the network and run again, or download {them} elsewhere and give {them} as "
                         "above" + (f" (with {flags['offline']}, nothing is tried online)" if "offline" in flags
                                    else "") + ".")
        return "\n".join(lines)

    def _offline_words(self, flags: Mapping[str, str]) -> str:
        if self.offline in OFFLINE_VARIABLES:
            return f" ({self.offline} is set)"
        return f" ({flags['offline']})" if "offline" in flags else ""

    def _describe(self, item: Unavailable, flags: Mapping[str, str]) -> list[str]:
        entry = item.entry
        if entry is None:
            what = "a folder of `dcase9 export` on the Hugging Face Hub"
        else:
            size = f", {entry.size_bytes / 1e9:.1f} GB" if entry.size_bytes else ""
            what = f"{entry.description}; a {entry.kind}{size}"
        lines = [f"  - {item.name} ({what})"]
        sources = " or ".join(source.describe() for source in entry.sources) if entry is not None else ""
        if item.why == "not-found":
            return lines + [f"      {item.given} was given for it and does not exist"]
        if item.why == "unpublished":
            lines.append("      nobody publishes it: train it (`dcase9 train`), or get the file from whoever did")
        elif item.why == "offline":
            lines.append(f"      {item.given} is not in the Hugging Face cache" if item.given else f"      from {sources}")
        elif item.why == "unreachable":
            where = f"{item.given} (on the Hugging Face Hub)" if item.given else sources
            lines.append(f"      from {where}, which cannot be reached ({item.detail})")
        else:
            lines.append("      every source failed:")
            lines += [f"        - {line}" for line in item.detail.splitlines()]
        lines.append(f"      {self._ways(item, flags)}")
        return lines

    def _ways(self, item: Unavailable, flags: Mapping[str, str]) -> str:
        """How the caller gives a local copy: the arguments it has for it, and the cache's place."""
        if item.entry is None:
            return f"give a local copy of the folder instead of {item.given}"
        what = "DIR" if item.entry.kind == "folder" else "FILE"
        role = self.roles.get(item.name)
        ways = [flags[key].format(name=item.name, what=what) for key in (role, "weights") if key and key in flags]
        place = f"place it at {cache_path(item.name, item.entry)}" + (" (a folder)" if what == "DIR" else "")
        return (f"give it with {' or '.join(ways)}, or {place}" if ways else place)


def _rebuild_missing_weights(missing: Sequence[Unavailable], offline: str | None,
                             roles: Mapping[str, str]) -> MissingWeights:
    return MissingWeights(missing, offline=offline, roles=roles)


@dataclass(frozen=True)
class WeightPlan:
    """What getting one weight takes (`weight_plan`): nothing (`ready`: given, or cached), a download from
    one of `urls` (a host of them must answer), or it cannot be had (`missing`)."""

    name: str
    ready: bool = False
    urls: tuple[str, ...] = ()
    missing: Unavailable | None = None


def _immutable(reference: HubReference) -> bool:
    return reference.revision is not None and re.fullmatch(r"[0-9a-f]{40}", reference.revision) is not None


def _hub_folder_cached(reference: HubReference) -> bool:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        huggingface_hub.snapshot_download(reference.repo, revision=reference.revision, local_files_only=True)
    except LocalEntryNotFoundError:
        return False
    return True


def weight_plan(name: str, entry: WeightEntry, *, explicit: str | Path | HubReference | None = None,
                offline: bool = False, download: bool = True) -> WeightPlan:
    """What getting the weight takes, found without reading, hashing or downloading anything (`resolve_weight`
    checks what it then finds): given (a path that exists, a Hub folder in the cache), cached, a download,
    or missing."""
    forbidden = offline_requested(offline) or not download
    if explicit is not None:
        location = checkpoint_location(explicit)
        if isinstance(location, Path):
            return WeightPlan(name, ready=True) if location.exists() else \
                WeightPlan(name, missing=Unavailable(name, entry, "not-found", str(location)))
        if _hub_folder_cached(location):
            return WeightPlan(name, ready=True)
        if forbidden:
            return WeightPlan(name, missing=Unavailable(name, entry, "offline", str(location)))
        return WeightPlan(name, urls=(hub_endpoint(),))
    hub_sources = [source for source in entry.sources if source.huggingface or source.huggingface_snapshot]
    if cache_path(name, entry).exists() or any(_huggingface(source, entry, local_only=True) is not None
                                               for source in hub_sources):
        return WeightPlan(name, ready=True)
    if not entry.sources:
        return WeightPlan(name, missing=Unavailable(name, entry, "unpublished"))
    if forbidden:
        return WeightPlan(name, missing=Unavailable(name, entry, "offline"))
    return WeightPlan(name, urls=tuple(dict.fromkeys(source_url(source) for source in entry.sources)))


# ------------------------------------------------------------------------------------------------
# Registry weights


def resolve_weight(name: str, entry: WeightEntry, *, explicit: str | Path | HubReference | None = None,
                   offline: bool = False, download: bool = True, progress: bool = True,
                   reach: Reachability | None = None) -> ResolvedWeight:
    """Local path of a weight, downloading it if allowed; see the module docstring for the order. A weight
    that cannot be had raises `MissingWeights`; a download is not tried from a host that does not accept a
    connection (`reach`: the answers known already)."""
    reach = reach or Reachability()
    if explicit is not None:
        location = checkpoint_location(explicit)
        if isinstance(location, HubReference):
            try:
                folder, commit = fetch_hub_folder(location, offline=offline_requested(offline) or not download,
                                                  name=name, reach=reach)
            except MissingWeights as exc:  # said with the weight's description
                raise MissingWeights([replace(item, entry=entry) for item in exc.missing],
                                     offline=exc.offline) from None
            return ResolvedWeight(name, folder, folder_identity(folder), str(HubReference(location.repo, commit)))
        if not location.exists():
            raise MissingWeights([Unavailable(name, entry, "not-found", str(location))])
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
                    if first_use and may_ask and not reach.problem(hub_endpoint()) else None
                return ResolvedWeight(name, path, _verify_hub(name, entry, source, files, reported), "cache")

    if not entry.sources:
        raise MissingWeights([Unavailable(name, entry, "unpublished")])
    if not may_ask:
        raise MissingWeights([Unavailable(name, entry, "offline")], offline=offline_reason(offline) or "argument")
    tried: list[str] = []
    problems = reach.problems(source_url(source) for source in entry.sources)
    if all(problems.values()):  # nothing to try: say so now, not after a download's retries
        raise MissingWeights([Unavailable(name, entry, "unreachable", detail="; ".join(dict.fromkeys(
            problem for problem in problems.values() if problem)))])
    for source in entry.sources:
        problem = problems[source_url(source)]
        if problem:
            tried.append(f"{source.describe()}: cannot be reached ({problem})")
            continue
        try:
            path, sha = _download(source, name, entry, progress)
        except CheckpointError:
            raise
        except Exception as exc:  # network, HTTP, hub errors: try the next source
            tried.append(f"{source.describe()}: {_download_failure(exc)}")
            continue
        return ResolvedWeight(name, path, sha, source.describe())
    raise MissingWeights([Unavailable(name, entry, "failed", detail="\n".join(tried))])


def _download_failure(exc: BaseException) -> str:
    """Why a download failed, in a line: huggingface_hub's "cannot find the requested files" after a failed
    request is the network's failure, said as such (its cause's words)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(exc, LocalEntryNotFoundError):
        cause = exc.__cause__ or exc.__context__
        return "the Hugging Face Hub could not be reached" + (f" ({_first_line(cause)})" if cause else "")
    return f"{type(exc).__name__}: {_first_line(exc)}"


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
        except Exception:
            if local_only:  # not cached (LocalEntryNotFoundError), or a cache that cannot be read
                continue
            raise  # a download that failed says why (huggingface_hub's LocalEntryNotFoundError: the network)
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
        if fetched is None:  # unreachable: a download raises, or gives the files
            raise CheckpointError(f"{source.describe()}: huggingface_hub gave no file for '{name}'")
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
