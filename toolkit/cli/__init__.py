"""The `dcase9` command line: a thin shell over the Python API of the same verbs.

Each module below adds its commands to the shared Typer app; keep their imports cheap
(heavy libraries are imported inside the command bodies).
"""

from __future__ import annotations

from toolkit.cli._common import app

# Command modules register themselves on import.
# (command modules are imported here as they are added)
from toolkit.cli import augment as _augment  # noqa: E402,F401  dcase9 augment


def main() -> None:
    app()


__all__ = ["app", "main"]
