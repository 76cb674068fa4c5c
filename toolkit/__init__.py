"""dcase9: a toolkit for DCASE Task 9, language-queried audio source separation (LASS).

    import dcase9
    separator = dcase9.load_separator("baseline")
    estimate = separator.separate(mixture, "a dog barks", sample_rate=16000)

The verbs of `dcase9.api` (the same as the command line's) are reachable from here; importing this
package is cheap: they, and PyTorch, are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from dcase9.version import __version__

# The verbs of the Python API, imported from dcase9.api when first used.
_API = ("load_separator", "separate", "validate", "mix", "score", "report", "train", "download", "load_ats_scorer",
        "suite")

__all__ = ["__version__", "api", *_API]


def __getattr__(name: str) -> Any:
    if name == "api" or name in _API:
        api = importlib.import_module("dcase9.api")  # sets dcase9.api: later lookups do not come here
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'dcase9' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
