"""dcase9's version, as the installed distribution states it (pyproject.toml is the one place it is written)."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("dcase9")
except metadata.PackageNotFoundError:  # imported from a tree that is not installed (no metadata to read)
    __version__ = "0+unknown"
