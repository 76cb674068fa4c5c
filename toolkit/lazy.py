"""Import heavy optional dependencies only where they are needed, with an actionable message."""

from __future__ import annotations

import importlib
from types import ModuleType

from dcase9.errors import MissingDependencyError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module` or explain which extra of dcase9 provides it.

    >>> require("diffusers", extra="ldm", purpose="System 3 (IRM-LDM)")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"{purpose} needs the '{top}' package, which is not installed ({exc}). "
            f"Install it with: pip install 'dcase9[{extra}]'"
        ) from exc
