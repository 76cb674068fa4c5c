"""The `dcase9` command line: a thin shell over the Python API of the same verbs.

Each module below adds its commands to the shared Typer app; keep their imports cheap
(heavy libraries are imported inside the command bodies).
"""

from __future__ import annotations

from toolkit.cli._common import app

# Command modules register themselves on import.
from toolkit.cli import data as _data  # noqa: F401,E402  validate, mix, demo-data
from toolkit.cli import run as _run  # noqa: F401,E402  systems, download, infer, score
from toolkit.cli import report as _report  # noqa: F401,E402  report
from toolkit.cli import augment as _augment  # noqa: F401,E402  augment
from toolkit.cli import package as _package  # noqa: F401,E402  package
from toolkit.cli import demo as _demo  # noqa: F401,E402  demo
from toolkit.cli import train as _train  # noqa: F401,E402  train


def main() -> None:
    app()


__all__ = ["app", "main"]
