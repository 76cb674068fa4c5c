"""The `dcase9` command line: a thin shell over the Python API of the same verbs.

Each module below adds its commands to the shared Typer app; keep their imports cheap
(heavy libraries are imported inside the command bodies).
"""

from __future__ import annotations

from dcase9.cli._common import app, stop_on_sigterm

# Command modules register themselves on import.
from dcase9.cli import data as _data  # noqa: F401,E402  validate, mix, demo-data
from dcase9.cli import run as _run  # noqa: F401,E402  systems, download, infer, score
from dcase9.cli import separate as _separate  # noqa: F401,E402  separate
from dcase9.cli import report as _report  # noqa: F401,E402  report
from dcase9.cli import augment as _augment  # noqa: F401,E402  augment
from dcase9.cli import package as _package  # noqa: F401,E402  package
from dcase9.cli import demo as _demo  # noqa: F401,E402  demo
from dcase9.cli import train as _train  # noqa: F401,E402  train
from dcase9.cli import info as _info  # noqa: F401,E402  env
from dcase9.cli import export as _export  # noqa: F401,E402  export
from dcase9.cli import suite as _suite  # noqa: F401,E402  suite


def main() -> None:
    stop_on_sigterm()
    app()


__all__ = ["app", "main"]
