"""The weight registry (toolkit/weights.yaml): what each pretrained file is, and resolving it on demand."""

from __future__ import annotations

import functools
from pathlib import Path

from toolkit.errors import ConfigError
from toolkit.hub import ResolvedWeight, WeightEntry, load_registry, resolve_weight

REGISTRY_FILE = Path(__file__).with_name("weights.yaml")


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

    `explicit` maps weight names to local paths (`--checkpoint`, `--weight NAME=PATH`); every
    resolution is remembered for the run manifest.
    """

    def __init__(self, explicit: dict[str, Path] | None = None, *, offline: bool = False, download: bool = True,
                 progress: bool = True):
        self.explicit = dict(explicit or {})
        self.offline, self.download, self.progress = offline, download, progress
        self.resolved: dict[str, ResolvedWeight] = {}
        for name in self.explicit:
            weight_entry(name)  # a typo in --weight NAME=PATH is reported before anything loads

    def __call__(self, name: str) -> Path:
        if name not in self.resolved:
            self.resolved[name] = resolve_weight(name, weight_entry(name), explicit=self.explicit.get(name),
                                                 offline=self.offline, download=self.download,
                                                 progress=self.progress)
        return self.resolved[name].path

    def identity(self) -> dict[str, str]:
        """What identifies the weights used: sha256 for files, the path for folders."""
        return {name: r.sha256 or str(r.path) for name, r in sorted(self.resolved.items())}
