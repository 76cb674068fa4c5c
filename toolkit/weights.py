"""The weight registry (toolkit/weights.yaml): what each pretrained file is, and resolving it on demand."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from dcase9.errors import ConfigError
from dcase9.files import sha256_text
from dcase9.hub import (HubReference, MissingWeights, Reachability, ResolvedWeight, Unavailable, WeightEntry,
                        load_registry, offline_reason, resolve_weight, weight_plan)

__all__ = ["CLAP_WEIGHT", "REGISTRY_FILE", "TOKENIZER_WEIGHT", "MissingWeights", "WeightResolver", "weight_entries",
           "weight_entry"]

REGISTRY_FILE = Path(__file__).with_name("weights.yaml")
# The two weights every CLAP-queried system may load besides its checkpoint.
TOKENIZER_WEIGHT = "roberta-base-tokenizer"
CLAP_WEIGHT = "clap-music-speech-audioset"  # the standalone laion CLAP (ATS; query encoder fallback)


@functools.cache
def weight_entries() -> dict[str, WeightEntry]:
    return load_registry(REGISTRY_FILE)


def weight_entry(name: str) -> WeightEntry:
    entries = weight_entries()
    if name not in entries:
        raise ConfigError(f"unknown weight {name!r}; the registry ({REGISTRY_FILE.name}) has: {', '.join(entries)}")
    return entries[name]


class WeightResolver:
    """Resolves registry weights when a system asks for them, honouring user-given paths.

    `explicit` maps weight names to local paths or folders of `dcase9 export` on the Hub
    (`--checkpoint`, `--weight NAME=PATH`; see `dcase9.hub.checkpoint_location`); every
    resolution is remembered for the run manifest. `embed` gives a folder weight from files held in
    memory (a checkpoint's tokenizer), in a temporary folder that `close` removes.

    `require` checks, before anything is read or downloaded, that every weight a call will ask for can
    be had, and names all that cannot in one `MissingWeights`; `roles` maps a weight to the argument of
    the call that gives it besides `weights` (e.g. {"audiosep-checkpoint": "checkpoint"}), for its hints.
    A host that does not accept a connection is asked once per resolver.
    """

    def __init__(self, explicit: Mapping[str, Path | HubReference] | None = None, *, offline: bool = False,
                 download: bool = True, progress: bool = True, roles: Mapping[str, str] | None = None):
        self.explicit = dict(explicit or {})
        self.offline, self.download, self.progress = offline, download, progress
        self.roles = dict(roles or {})
        self.resolved: dict[str, ResolvedWeight] = {}
        self.reach = Reachability()
        self._temporary: list[Path] = []
        self._embedded: set[str] = set()
        for name in self.explicit:
            weight_entry(name)  # a typo in --weight NAME=PATH is reported before anything loads

    def __call__(self, name: str) -> Path:
        if name not in self.resolved:
            try:
                self.resolved[name] = resolve_weight(name, weight_entry(name), explicit=self.explicit.get(name),
                                                     offline=self.offline, download=self.download,
                                                     progress=self.progress, reach=self.reach)
            except MissingWeights as exc:
                raise exc.with_roles(self.roles) from None
        return self.resolved[name].path

    def require(self, names: Iterable[str]) -> None:
        """Check, without reading, hashing or downloading anything, that each weight of `names` can be had:
        given, cached, or downloadable (downloads allowed, and a host of its sources accepts a connection
        within seconds). Raises one `MissingWeights` naming every one that cannot, in the order given."""
        wanted = [name for name in dict.fromkeys(names) if name not in self.resolved]
        plans = [weight_plan(name, weight_entry(name), explicit=self.explicit.get(name), offline=self.offline,
                             download=self.download) for name in wanted]
        problems = self.reach.problems(url for plan in plans for url in plan.urls)
        missing: list[Unavailable] = []
        for plan in plans:
            if plan.missing is not None:
                missing.append(plan.missing)
            elif plan.urls and all(problems[url] for url in plan.urls):
                given = self.explicit.get(plan.name)
                missing.append(Unavailable(plan.name, weight_entry(plan.name), "unreachable",
                                           str(given) if given is not None else "",
                                           "; ".join(dict.fromkeys(str(problems[url]) for url in plan.urls))))
        if missing:
            offline = offline_reason(self.offline) or ("argument" if not self.download else None)
            raise MissingWeights(missing, offline=offline, roles=self.roles)

    def embed(self, name: str, files: Mapping[str, str], origin: str) -> bool:
        """Resolve the folder weight `name` to `files` (file name -> text) written into a temporary folder,
        unless the user gave a path for it (returns whether it was taken). Its identity is the sha256 of
        the files, so runs from the same files resume wherever the folder was written."""
        weight_entry(name)
        if name in self.explicit:
            return False
        folder = Path(tempfile.mkdtemp(prefix=f"dcase9-{name}-"))
        self._temporary.append(folder)
        for file_name, text in files.items():
            (folder / Path(file_name).name).write_text(text, encoding="utf-8")
        digest = sha256_text(json.dumps(dict(files), sort_keys=True))
        self.resolved[name] = ResolvedWeight(name, folder, digest, origin)
        self._embedded.add(name)
        return True

    def close(self) -> None:
        """Remove the temporary folders of `embed` (what was loaded from them stays loaded)."""
        for folder in self._temporary:
            shutil.rmtree(folder, ignore_errors=True)
        self._temporary.clear()

    def identity(self) -> dict[str, str]:
        """What identifies the weights used: sha256 for files (and embedded folders), the path for folders."""
        return {name: r.sha256 or str(r.path) for name, r in sorted(self.resolved.items())}

    def locations(self) -> dict[str, str]:
        """Where each weight was taken from, for the run manifest (an embedded one: its origin)."""
        return {name: r.origin if name in self._embedded else str(r.path) for name, r in self.resolved.items()}
