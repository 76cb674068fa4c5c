"""What a bug report needs (`dcase9 env`): versions, devices, and the cache folders and what they hold.

Versions come from the installed distributions' metadata (never from a hand-copied string); an
optional extra that is not installed says which `pip install 'dcase9[...]'` brings it.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from dcase9.home import dcase9_home
from dcase9.version import __version__
import contextlib

# Distribution -> the extra that installs it (None: a core dependency).
PACKAGES: dict[str, str | None] = {
    "torch": None, "numpy": None, "soundfile": None, "soxr": None, "julius": None, "typer": None, "rich": None,
    "pydantic": None, "PyYAML": None, "matplotlib": None, "transformers": None, "tokenizers": None,
    "huggingface-hub": None, "diffusers": "ldm", "lightning": "train", "openai": "augment", "bert-score": "augment",
}
OFFLINE_VARIABLES = ("DCASE9_OFFLINE", "HF_HUB_OFFLINE", "DCASE9_HOME", "HF_HOME", "HF_HUB_CACHE")


@dataclass
class CacheFolder:
    name: str
    path: str
    exists: bool
    entries: dict[str, int] = field(default_factory=dict)  # what it holds -> bytes
    note: str = ""


@dataclass
class Environment:
    dcase9: str
    location: str
    python: str
    executable: str
    platform: str
    packages: dict[str, str]  # distribution -> version, or "not installed (...)"
    devices: dict[str, Any]
    caches: list[CacheFolder]
    variables: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _devices() -> dict[str, Any]:
    import torch

    devices: dict[str, Any] = {"cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                               "cuda": torch.cuda.is_available(), "cuda_build": torch.version.cuda}
    if devices["cuda"]:
        devices["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    devices["mps"] = bool(mps is not None and mps.is_available())
    return devices


def _caches() -> list[CacheFolder]:
    folders = []
    try:
        home = dcase9_home()
    except Exception as exc:  # a DCASE9_HOME that is a file: say so here instead of failing the report
        folders.append(CacheFolder("dcase9", os.environ.get("DCASE9_HOME", ""), False, note=str(exc)))
    else:
        weights = home / "weights"
        entry = CacheFolder("dcase9 weights (DCASE9_HOME)", str(home), home.is_dir())
        if weights.is_dir():
            entry.entries = {p.name: _folder_bytes(p) for p in sorted(weights.iterdir()) if p.is_dir()}
        folders.append(entry)
    try:
        from huggingface_hub import constants

        hub = Path(constants.HF_HUB_CACHE)
    except ImportError:
        hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    entry = CacheFolder("Hugging Face hub cache", str(hub), hub.is_dir())
    if hub.is_dir():
        entry.entries = {p.name: _folder_bytes(p) for p in sorted(hub.iterdir()) if p.name.startswith("models--")}
    folders.append(entry)
    return folders


def describe_environment() -> Environment:
    packages = {}
    for name, extra in PACKAGES.items():
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = f"not installed (pip install 'dcase9[{extra}]')" if extra else "not installed"
    return Environment(
        dcase9=__version__, location=str(Path(__file__).resolve().parent), python=platform.python_version(),
        executable=sys.executable, platform=platform.platform(), packages=packages, devices=_devices(),
        caches=_caches(), variables={k: os.environ[k] for k in OFFLINE_VARIABLES if k in os.environ})
